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
DEADLINE_SECONDS = 60.0

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            # The demo stops gracefully on SIGTERM (drain, summary, its broker stopped): a
            # kill before it finishes would leave that broker running.
            proc.wait(timeout=90)
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
def target(tmp_path: Path) -> Iterator[int]:
    """A real streamgen process: `streamgen demo` (embedded broker, synthetic stream with
    injected anomalies, the consumer) serving its metrics on a free loopback port."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgen", "demo", "--seconds", str(int(DEADLINE_SECONDS) + 60),
         "--metrics-port", str(port), "--report", str(tmp_path / "report"),
         "--set", "model.hidden=32"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
    )

    def serving() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.status == 200

    try:
        wait_for("streamgen demo metrics endpoint", serving, time.monotonic() + 60)
        yield port
    finally:
        stop(proc)
        log.close()


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
