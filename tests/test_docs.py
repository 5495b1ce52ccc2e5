"""The documentation a clone carries: no reference to notes outside the repository, no broken
relative link, and every ``docs/architecture.md, "Section"`` reference names a real section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
# Notes that were never part of the repository (spelled in pieces so this file does not
# match itself).
MISSING_NOTES = re.compile(
    r"\b(?:" + "design" + "|" + "style" + r")\.md\b|\b" + "tansu" + "-notes"
)
SCANNED = ["streamgen", "tests", "benchmarks", "deploy", "docs"]
SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
SECTION_REF = re.compile(r'docs/architecture\.md,\s+"([^"]+)"')


def _text_files() -> list[Path]:
    files = [REPO / "README.md"]
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and not SKIP_PARTS & set(path.parts):
                files.append(path)
    return files


def _read(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:4096]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
            *sorted((REPO / "deploy").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _headings(path: Path) -> list[str]:
    body = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", body, re.MULTILINE)]


def test_no_file_refers_to_notes_the_repository_does_not_contain() -> None:
    bad = []
    for path in _text_files():
        text = _read(path)
        if text is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if MISSING_NOTES.search(line):
                bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "references to notes outside the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files(doc: Path) -> None:
    body = FENCE.sub("", doc.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(body):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto: ...
        path_part, _, anchor = target.partition("#")
        dest = doc if not path_part else (doc.parent / path_part).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in {_slug(h) for h in _headings(dest)}:
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
        elif REPO not in dest.parents and dest != REPO:
            broken.append(f"{target}: outside the repository")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_architecture_section_references_name_real_sections() -> None:
    sections = set(_headings(ARCHITECTURE))
    refs = 0
    for path in _text_files():
        text = _read(path)
        if text is None or path in (ARCHITECTURE, Path(__file__).resolve()):
            continue
        for m in SECTION_REF.finditer(text):
            refs += 1
            name = " ".join(m.group(1).split())
            assert name in sections, f"{path.relative_to(REPO)}: no section {name!r}"
    assert refs, "no module points at docs/architecture.md"


def test_readme_links_the_architecture() -> None:
    assert "](docs/architecture.md)" in (REPO / "README.md").read_text(encoding="utf-8")
