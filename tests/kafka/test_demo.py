"""``streamgen demo`` end to end as a user runs it, and its pipeline file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streamgen.commands.demo import DEMO_PIPELINE
from streamgen.config import build_config, load_pipeline
from tests.kafka.helpers import ROOT

pytestmark = pytest.mark.kafka


def test_demo_yaml_is_the_builtin_pipeline():
    assert load_pipeline(ROOT / "pipelines" / "demo.yaml") == build_config(DEMO_PIPELINE)


def test_demo_runs_and_reports_anomalies(tmp_path):
    report = tmp_path / "report"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "streamgen", "demo", "--seconds", "20", "--metrics-port", "0",
         "--report", str(report)],
        capture_output=True, text=True, timeout=150, cwd=tmp_path, env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert "produced" in out and "lag" in out  # live progress lines
    assert "summary" in out and "injected anomaly segments detected" in out
    summary = json.loads((report / "summary.json").read_text())
    assert summary["records_produced"] > 5000
    assert summary["malformed_produced"] > 0
    # Every produced record was scored once, malformed ones as dead letters.
    assert summary["records_scored"] == summary["records_produced"] + summary["malformed_produced"]
    assert summary["dead_letters"] == summary["malformed_produced"]
    assert summary["anomalies_flagged"] > 0
    assert summary["injected_segments"] > 0 and summary["segments_detected"] > 0
    scores = (report / "scores.jsonl").read_text().splitlines()
    assert len(scores) >= summary["records_scored"]
    assert (report / "alerts.jsonl").exists()
