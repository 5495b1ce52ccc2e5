"""Prometheus rules, config and Grafana dashboard: promtool checks and metric-name agreement."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamgen.io.metrics import PrometheusMetrics
from tests.io.test_metrics import drive_all_hooks

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "streamgen.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules" / "streamgen.rules.test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamgen.json"
PROMTOOL = shutil.which("promtool")

EXPECTED_ALERTS = {
    "StreamgenDown",
    "StreamgenConsumerLagGrowing",
    "StreamgenNoRecords",
    "StreamgenCheckpointStale",
    "StreamgenAnomalyAlertsFiring",
    "StreamgenModelDiverging",
    "StreamgenDeadLettersHigh",
    "StreamgenUnhealthy",
    "StreamgenStalled",
}
# Series names in an expression that must come from our exporter (recording rules use ':').
METRIC_RE = re.compile(r"\b((?:streamgen|process)_[a-zA-Z0-9_]+)")
RECORDED_RE = re.compile(r"\b(streamgen:[a-zA-Z0-9_:]+)")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def all_rules() -> list[dict]:
    return [r for g in rule_groups() for r in g["rules"]]


def exported_names() -> set[str]:
    m = PrometheusMetrics()
    drive_all_hooks(m)
    return {s.name for fam in m.registry.collect() for s in fam.samples}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if "expr" in t)
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
        elif var["type"] == "query":
            exprs.append(query)
    return exprs


# -- promtool ---------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in proc.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    proc = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_check_config(tmp_path: Path) -> None:
    # The config points at container paths; check a copy whose rule_files point here.
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    assert cfg["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]
    cfg["rule_files"] = [str(RULES.parent / "*.rules.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    proc = promtool("check", "config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in proc.stdout
    # The glob must not pick up the unit-test file.
    assert RULES_TEST.name not in proc.stdout


# -- content ----------------------------------------------------------------------------------


def test_every_expected_alert_exists_with_severity_and_docs() -> None:
    alerts = {r["alert"]: r for r in all_rules() if "alert" in r}
    assert set(alerts) == EXPECTED_ALERTS
    readme = (DEPLOY / "README.md").read_text()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert name in readme, f"{name} is not explained in deploy/README.md"


def test_unit_tests_cover_every_alert_both_ways() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_rules_reference_only_exported_metrics() -> None:
    exported = exported_names()
    recorded = {r["record"] for r in all_rules() if "record" in r}
    for rule in all_rules():
        expr = rule["expr"]
        assert set(METRIC_RE.findall(expr)) <= exported, (rule, set(METRIC_RE.findall(expr)))
        assert set(RECORDED_RE.findall(expr)) <= recorded, rule


def test_dashboard_references_only_exported_metrics() -> None:
    exported = exported_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = set(METRIC_RE.findall(expr))
        assert names <= exported, (expr, names - exported)
        assert not RECORDED_RE.findall(expr) or set(RECORDED_RE.findall(expr)) <= {
            r["record"] for r in all_rules() if "record" in r
        }
        used |= names
    # The panels the brief asks for: throughput, lag, latency, loss, anomalies, alerts.
    for name in [
        "streamgen_records_in_total",
        "streamgen_consumer_lag_records",
        "streamgen_end_to_end_latency_seconds_bucket",
        "streamgen_train_loss",
        "streamgen_anomalies_total",
        "streamgen_alerts_firing",
    ]:
        assert name in used, name


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "streamgen" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"
