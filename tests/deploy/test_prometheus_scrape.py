"""A real Prometheus scrapes a real streamgen metrics endpoint and evaluates our rules."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "streamgen.rules.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEADLINE_SECONDS = 30.0

# TODO: switch to streamgen demo (`streamgen demo --seconds N --metrics-port PORT`) once the CLI
# has it; until then this stand-in serves PrometheusMetrics through MetricsServer and drives
# the hooks the way the engine does (records, scores, anomalies, alert events, training).
TARGET_SCRIPT = r"""
import sys, time
from streamgen.io.metrics import MetricsServer, PrometheusMetrics

m = PrometheusMetrics()
server = MetricsServer.for_metrics(m, "127.0.0.1", 0, ready=lambda: True).start()
print(server.port, flush=True)
end = time.monotonic() + float(sys.argv[1])
step = 0
while time.monotonic() < end:
    step += 1
    m.healthy(True)
    m.records_in(64, "kafka")
    m.batch(64, 60)
    for stage, sec in (("decode", 0.001), ("window", 0.002), ("score", 0.01), ("learn", 0.03)):
        m.stage_latency(stage, sec)
    m.end_to_end_latency([0.05] * 60)
    m.consumer_lag("sensors", 0, 10)
    m.last_event_timestamp(time.time())
    m.train_step("sota", loss=0.4, kl=None, skipped=False)
    m.scores("sota", [0.5] * 58 + [6.0, 7.5])
    m.anomalies("sota", 2)
    if step == 1:
        m.alert_event("firing")
        m.alert_event("firing")
    m.alerts_firing(2)
    m.records_out(64, "scores")
    m.keys_tracked(16)
    m.checkpoint(0.05, time.time(), ok=True)
    time.sleep(0.2)
server.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def wait_for(what: str, check: Callable[[], Any], deadline: float) -> Any:
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - not up yet; retried until the deadline
            last_error = exc
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error!r})")


@pytest.fixture
def target() -> Iterator[int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", TARGET_SCRIPT, str(DEADLINE_SECONDS + 20)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"target did not start (rc={proc.poll()})"
        yield int(line)
    finally:
        stop(proc)


@pytest.fixture
def prometheus(target: int, tmp_path: Path) -> Iterator[str]:
    if not Path(PROMETHEUS).is_file():
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "streamgen", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


def test_prometheus_scrapes_streamgen_and_evaluates_rules(prometheus: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS

    def ready() -> bool:
        with urllib.request.urlopen(f"{prometheus}/-/ready", timeout=2) as resp:
            return resp.status == 200

    wait_for("prometheus ready", ready, deadline)

    def target_up() -> bool:
        active = api(prometheus, "/api/v1/targets")["activeTargets"]
        return any(t["labels"]["job"] == "streamgen" and t["health"] == "up" for t in active)

    wait_for("streamgen target up", target_up, deadline)

    def recorded_rate() -> float:
        result = api(prometheus, "/api/v1/query", query="streamgen:records_in:rate1m")["result"]
        return result and float(result[0]["value"][1])

    assert wait_for("recording rule value", recorded_rate, deadline) > 0

    def alert_states() -> dict[str, str]:
        groups = api(prometheus, "/api/v1/rules", type="alert")["groups"]
        return {r["name"]: r["state"] for g in groups for r in g["rules"]}

    def anomaly_alert_active() -> dict[str, str] | None:
        states = alert_states()
        # `for: 1m` keeps it pending within this test's time budget.
        return states if states["StreamgenAnomalyAlertsFiring"] in {"pending", "firing"} else None

    states = wait_for("StreamgenAnomalyAlertsFiring pending", anomaly_alert_active, deadline)
    assert set(states) >= {"StreamgenDown", "StreamgenAnomalyAlertsFiring"}
    assert states["StreamgenDown"] == "inactive"
    assert states["StreamgenDeadLettersHigh"] == "inactive"

    up = api(prometheus, "/api/v1/query", query='up{job="streamgen"}')["result"]
    assert [float(s["value"][1]) for s in up] == [1.0]
    info = api(prometheus, "/api/v1/query", query="streamgen_build_info")["result"]
    import streamgen

    assert info[0]["metric"]["version"] == streamgen.__version__
