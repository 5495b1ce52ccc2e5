"""The status page's collector (streamgen/io/status.py) and its HTTP endpoints: bounds on keys
and history, what the snapshot holds, and that it matches what the engine produced."""

from __future__ import annotations

import json
import math
import urllib.request

import numpy as np
import pytest

from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.io import status as st
from streamgen.io.metrics import MetricsServer, PrometheusMetrics
from streamgen.io.status import StatusCollector, page_html
from streamgen.records import Position


def _row(key, ts, score, flag=False, error=None):
    return {"key": key, "ts_ms": ts, "score": score, "is_anomaly": flag, "error": error}


def test_keys_and_history_stay_bounded_on_an_unbounded_key_space(monkeypatch):
    monkeypatch.setattr(st, "RANK_EVERY_S", 0.0)  # re-rank every batch: the worst case
    c = StatusCollector(keys=3, history=16)
    scores, conts, alerts = c.sinks()
    rng = np.random.default_rng(0)
    ts = 0
    for b in range(300):
        # 200 new keys per batch (60,000 in all), plus one steady busy key and a few hot ones
        for i in range(200):
            ts += 1
            scores.add(_row(f"k{b}-{i}", ts, float(rng.normal())))
        for _ in range(50):
            ts += 1
            scores.add(_row("busy", ts, 0.1))
            conts.add({"key": "busy", "ts_ms": ts, "forecast": [[1.0]] * 4,
                       "spread": [[0.5]] * 4})
        scores.add(_row(f"hot{b % 7}", ts, 50.0 + b % 7, flag=True))
        scores.add({"key": None, "ts_ms": None, "score": None, "is_anomaly": False,
                    "error": "bad json"})
        alerts.add({"key": f"k{b}-0", "state": "firing", "start_ms": ts, "end_ms": None,
                    "peak": 9.0, "count": 2})
        c.batch(None)
        c.sample(ts, 0)
        assert len(c.tracked) <= c.max_tracked == 9
        assert len(c.busiest) <= 3 and len(c.anomalous) <= 3
        for t in c.tracked.values():
            assert len(t.points) <= 16 and len(t.conts) <= st.MAX_CONTINUATIONS
    cap = max(32, 8 * 3)
    assert len(c._busy.values) <= 2 * cap and len(c._peak.values) <= 2 * cap
    assert len(c._last_peak) <= 4 * cap + 300
    assert len(c._records) <= c.max_tracked
    assert len(c.open_alerts) == st.MAX_OPEN_ALERTS
    assert len(c.recent_alerts) == st.RECENT_ALERTS
    assert len(c.samples) == st.RATE_SAMPLES
    assert c._scores.rows == [] and c._conts.rows == []  # digested, nothing kept
    assert c.busiest[0] == "busy"
    assert set(c.anomalous) <= {f"hot{i}" for i in range(7)} and len(c.anomalous) == 3
    snap = c.snapshot()
    assert len(snap["keys"]) <= 6
    assert len(snap["keys"]["busy"]["points"]["seq"]) == 16


def test_snapshot_is_strict_json_with_the_documented_fields():
    c = StatusCollector(keys=2, history=8, info=lambda: {"health": {"ready": True},
                                                          "records": 3, "lag": 0},
                        name="p", model="sota")
    scores, _, alerts = c.sinks()
    scores.add(_row("a", 1, float("nan")))
    scores.add(_row("a", 2, float("inf")))
    scores.add(_row("a", 3, 5.0, flag=True))
    alerts.add({"key": "a", "state": "firing", "start_ms": 3, "end_ms": None,
                "peak": float("nan"), "count": 2})
    c.batch(None)
    c.sample(0, None)
    c.sample(3, 0)
    snap = c.snapshot()
    json.dumps(snap, allow_nan=False)  # no NaN or Infinity anywhere
    assert {"name", "model", "time", "started", "threshold", "channel", "horizon", "busiest",
            "anomalous", "keys", "alerts", "throughput", "health", "records", "lag"} <= set(snap)
    assert snap["name"] == "p" and snap["health"] == {"ready": True}
    assert snap["busiest"] == ["a"] and snap["anomalous"] == ["a"]
    key = snap["keys"]["a"]
    assert set(key) == {"records", "rate", "score", "anomalous", "peak", "peak_ts_ms",
                        "points", "continuation", "checked"}
    assert key["points"]["score"] == [None, None, 5.0]
    assert key["points"]["flag"] == [False, False, True]
    assert key["peak"] == 5.0 and key["anomalous"] is True
    assert snap["alerts"]["open"][0]["key"] == "a" and snap["alerts"]["open"][0]["peak"] is None
    assert len(snap["throughput"]["history"]) == 1


def test_the_tracked_keys_points_are_the_engines_values_scores_and_continuations():
    """Through a real engine: the values read back from the window ring line up with the
    score rows, continuations attach to their points, and a continuation whose horizon has
    arrived is compared with the values that did."""
    cfg = apply_overrides(PipelineConfig(), [
        "model.arch=mlp", "model.hidden=16", "model.warmup_steps=5", "window.length=16",
        "model.horizon=4"])
    c = StatusCollector(keys=3, history=50)
    s_sink, c_sink, a_sink = c.sinks()
    eng = Engine(cfg, Sinks(scores=s_sink, continuations=c_sink, alerts=a_sink))
    truth: dict[tuple[str, int], float] = {}
    msgs = []
    for i in range(600):
        for k in range(3):
            x = round(math.sin(i / (5 + k)) + 0.01 * i, 5)
            ts = 1_700_000_000_000 + i * 1000 + k
            truth[(f"k{k}", ts)] = x
            body = json.dumps({"key": f"k{k}", "ts": ts / 1000, "x": x}).encode()
            msgs.append(RawMessage(body, Position("t", 0, len(msgs))))
    # batches of uneven sizes, some with more points of a key than its window ring holds
    # (W + H = 20), then small ones for the last 164 points of each key
    sizes = [7, 100, 1, 33, 250, 64, 3]
    j = b = 0
    while j < len(msgs):
        n = sizes[b % len(sizes)] if j < 1200 else 9
        eng.process(msgs[j : j + n])
        c.batch(eng)
        j, b = j + n, b + 1
        if j == 849:  # right after a batch of 250 records: 83 or 84 points per key
            p = c.snapshot()["keys"]["k0"]["points"]
            assert p["seq"][-1] == 283 and len(p["seq"]) == 50
            # the newest 20 have their values, the older ones their scores only
            assert None not in p["value"][-20:] and set(p["value"][:-20]) == {None}
            assert None not in p["score"]
    snap = c.snapshot()
    assert snap["threshold"] == eng.threshold and snap["channel"] == "x"
    assert snap["horizon"] == 4
    assert sorted(snap["keys"]) == ["k0", "k1", "k2"]
    for key, k in snap["keys"].items():
        p = k["points"]
        assert len(p["seq"]) == 50 and p["seq"][-1] == 600
        assert p["seq"] == list(range(551, 601))  # no gap
        for ts, v in zip(p["ts_ms"], p["value"], strict=True):
            assert v == pytest.approx(truth[(key, ts)], abs=1e-5)
        assert all(sc is not None for sc in p["score"])
        cont = k["continuation"]
        assert cont["seq"] == 600 and len(cont["forecast"]) == 4 and len(cont["spread"]) == 4
        ck = k["checked"]
        assert ck["seq"] <= 596
        by_seq = dict(zip(p["seq"], p["value"], strict=True))
        assert ck["actual"] == [by_seq[ck["seq"] + 1 + i] for i in range(4)]
        assert ck["mae"] == pytest.approx(
            np.mean(np.abs(np.array(ck["actual"]) - np.array(ck["forecast"]))), abs=1e-5)
        assert 0.0 <= ck["within_spread"] <= 1.0


def test_metrics_server_serves_the_page_and_its_json():
    c = StatusCollector(keys=1, history=4)
    c.sinks()[0].add(_row("a", 1, 1.0))
    c.batch(None)
    with MetricsServer.for_metrics(PrometheusMetrics(), port=0, status=c.snapshot) as server:
        with urllib.request.urlopen(f"{server.url}/") as r:
            assert r.headers["Content-Type"].startswith("text/html")
            html = r.read()
        assert html == page_html() and b"status.json" in html
        # nothing from a CDN: the only URL is the SVG namespace
        assert html.replace(b"http://www.w3.org/2000/svg", b"").count(b"http") == 0
        with urllib.request.urlopen(f"{server.url}/status.json") as r:
            assert r.headers["Content-Type"] == "application/json"
            assert json.load(r)["busiest"] == ["a"]
        with urllib.request.urlopen(f"{server.url}/metrics") as r:
            assert b"streamgen_healthy" in r.read()

    def broken():
        raise RuntimeError("boom")

    with MetricsServer(PrometheusMetrics().registry, port=0, status=broken) as server:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.url}/status.json")
        assert err.value.code == 500 and "boom" in json.load(err.value)["error"]
    with MetricsServer(PrometheusMetrics().registry, port=0) as server:  # no status page
        with urllib.request.urlopen(f"{server.url}/") as r:
            assert r.read() == b"streamgen: /metrics /healthz /readyz\n"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server.url}/status.json")


def test_the_page_is_package_data():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert "io/*.html" in data["tool"]["setuptools"]["package-data"]["streamgen"]
    assert page_html().startswith(b"<!doctype html>")


def _service(*overrides):
    from streamgen.service import Service

    cfg = apply_overrides(PipelineConfig(), [
        "kafka.topics=[in]", "kafka.scores_topic=null", "kafka.continuations_topic=null",
        "kafka.alerts_topic=null", "kafka.dead_letter_topic=null", "metrics.port=0",
        "model.arch=mlp", "model.hidden=16", *overrides])
    return Service(cfg, metrics=PrometheusMetrics())


def test_the_service_feeds_the_page_and_says_why_it_is_not_ready():
    """Without a broker: the service's sinks reach the collector, and the page's health is
    /readyz's answer with the open problems as its reason."""
    svc = _service("metrics.status_keys=2")
    svc._start_metrics_server()
    try:
        url = svc.metrics_server.url
        assert svc.status is not None and svc.status.n_keys == 2
        svc.engine.sinks = svc._make_sinks()
        msgs = [RawMessage(json.dumps({"key": f"k{i % 3}", "ts": 1_700_000_000 + i,
                                       "x": float(i % 7)}).encode(), Position("in", 0, i))
                for i in range(300)]
        svc._process(msgs)  # the service's own batch step: engine, then the digest
        svc.health.report()  # as at start-up: no consumer yet
        snap = json.load(urllib.request.urlopen(f"{url}/status.json"))
        assert snap["records"] == 300 and len(snap["busiest"]) == 2
        assert snap["health"] == {"ready": False, "problems": {},
                                  "reason": "not connected yet"}
        svc.health.connected = True
        svc.health.problem("poll", "broker gone")
        snap = json.load(urllib.request.urlopen(f"{url}/status.json"))
        assert snap["health"] == {"ready": False, "problems": {"poll": "broker gone"},
                                  "reason": "poll: broker gone"}
        with pytest.raises(urllib.error.HTTPError):  # /readyz agrees
            urllib.request.urlopen(f"{url}/readyz")
        svc.health.resolved("poll")
        snap = json.load(urllib.request.urlopen(f"{url}/status.json"))
        assert snap["health"] == {"ready": True, "problems": {}, "reason": ""}
    finally:
        svc.metrics_server.stop()


def test_status_page_false_serves_no_page_and_collects_nothing():
    svc = _service("metrics.status_page=false")
    svc._start_metrics_server()
    try:
        assert svc.status is None
        assert svc._make_sinks().scores is None
        with urllib.request.urlopen(f"{svc.metrics_server.url}/") as r:
            assert r.read() == b"streamgen: /metrics /healthz /readyz\n"
    finally:
        svc.metrics_server.stop()
