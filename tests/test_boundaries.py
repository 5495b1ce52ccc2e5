"""Architecture rules that keep the core portable (docs/architecture.md, "Layers and boundaries")."""

from __future__ import annotations

import ast
from pathlib import Path

import streamgen

ROOT = Path(streamgen.__file__).parent
FORBIDDEN = {"kafka", "prometheus_client"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_and_models_import_neither_kafka_nor_prometheus():
    for pkg in ("core", "models"):
        for path in (ROOT / pkg).rglob("*.py"):
            bad = _imports(path) & FORBIDDEN
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_core_and_models_read_no_environment():
    for pkg in ("core", "models"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert "os.environ" not in path.read_text(), path
