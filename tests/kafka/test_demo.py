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
    assert "summary" in out and "evaluation (streamgen evaluate" in out
    assert "segments detected" in out and "false alerts" in out and "PR-AUC" in out
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
    # The evaluation of `streamgen evaluate`, against the injected labels, in the same folder.
    metrics = json.loads((report / "metrics.json").read_text())
    head = metrics["detection"]["summary"]
    assert head["segments"] == summary["injected_segments"] > 0
    assert head["segments_detected"] == summary["segments_detected"] > 0
    assert metrics["detection"]["labels"]["join"] == "label column of --scores"
    assert metrics["forecast"]["n_joined"] > 0  # continuations against the records sent
    assert summary["evaluation"] == str(report / "metrics.json")
    pngs = {p.name for p in report.glob("*.png")}
    assert set(metrics["report"]["plots"]) == pngs
    assert sum(n.startswith("score_") for n in pngs) == 8  # every key (--keys 8)
    assert sum(n.startswith("series_") for n in pngs) == 8 and "continuations.png" in pngs
    assert f"{report}/metrics.json" in out and "--verbose" in out


def test_sigterm_stops_the_demo_as_cleanly_as_ctrl_c(tmp_path):
    """SIGTERM used to end the demo at once: no summary, its broker left running, its
    temporary checkpoint folder left behind."""
    import re
    import signal
    import socket
    import time

    report = tmp_path / "report"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgen", "demo", "--seconds", "60", "--metrics-port", "0",
         "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "produced" in line and "lag" in line:  # streaming has begun
            break
    broker = re.search(r"broker (127\.0\.0\.1):(\d+)", "".join(lines))
    assert broker, "".join(lines)
    assert list(tmp.glob("streamgen-demo-*")), "the demo's checkpoint folder exists"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-3000:]
    assert "interrupted; stopping" in out and "summary" in out
    assert json.loads((report / "summary.json").read_text())["records_scored"] > 0
    with socket.socket() as s:  # the broker is gone
        assert s.connect_ex((broker.group(1), int(broker.group(2)))) != 0
    assert not list(tmp.glob("streamgen-demo-*"))
