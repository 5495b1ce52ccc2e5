"""PrometheusMetrics hooks, exposition lint (promtool) and the HTTP endpoints."""

from __future__ import annotations

import gzip
import inspect
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import streamgen
from streamgen.core.ports import Metrics
from streamgen.io.metrics import OVERFLOW_LABEL, MetricsServer, PrometheusMetrics

PROMTOOL = shutil.which("promtool")
# Keys a pipeline would see; none of them may ever show up in the exposition.
RECORD_KEYS = [f"pump-{i:04d}" for i in range(50)] + ["default", "sensor/7", 'quo"te']


def hook_names() -> list[str]:
    return [n for n, f in vars(Metrics).items() if callable(f) and not n.startswith("_")]


def drive_all_hooks(m: Metrics, rounds: int = 3) -> None:
    """Call every hook with realistic values, the way the engine does per batch."""
    for r in range(rounds):
        keys = RECORD_KEYS[r * 10 : r * 10 + 10]  # what the batch holds; never passed on
        m.healthy(True)
        m.records_in(len(keys) * 10, "kafka")
        m.dead_lettered(2, "not_json")
        m.dead_lettered(1, "late")
        m.batch(n_records=len(keys) * 10, n_windows=len(keys))
        for stage, sec in [
            ("decode", 0.0007),
            ("window", 0.002),
            ("score", 0.012),
            ("learn", 0.03),
            ("emit", 0.001),
        ]:
            m.stage_latency(stage, sec)
        m.end_to_end_latency([0.02, 0.05, 0.4, -0.001, float("nan")])
        for p in range(3):
            m.consumer_lag("sensors", p, 100 * p + r)
        m.last_event_timestamp(1_700_000_000.0 + r)
        m.train_step("sota", loss=0.5 / (r + 1), kl=None, skipped=False)
        m.train_step("rvae", loss=1.2, kl=0.3, skipped=False)
        m.train_step("rvae", loss=float("nan"), kl=None, skipped=True)
        m.scores("sota", [0.1, -0.5, 2.0, 4.5, 12.0, float("nan")])
        m.anomalies("sota", 2)
        m.forecast_error("sota", 0.25)
        m.alert_event("firing")
        m.alerts_firing(r + 1)
        m.records_out(len(keys) * 10, "scores")
        m.records_out(1, "alerts")
        m.keys_tracked(len(RECORD_KEYS))
        m.keys_evicted(1, "idle")
        m.checkpoint(0.08, 1_700_000_100.0 + r, ok=True)
        m.progress(1_700_000_100.0 + r)
        m.offset_reset("beyond_end")
    m.alert_event("resolved")
    m.rollback("rvae")
    m.checkpoint(1.5, 1_700_000_999.0, ok=False)


def exported_sample_names(m: PrometheusMetrics) -> set[str]:
    return {s.name for fam in m.registry.collect() for s in fam.samples}


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics()


def value(m: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


# -- hooks ------------------------------------------------------------------------------------


def test_every_hook_is_overridden() -> None:
    names = hook_names()
    assert len(names) >= 19
    for name in names:
        assert getattr(PrometheusMetrics, name) is not getattr(Metrics, name), name
        base, ours = (
            inspect.signature(getattr(Metrics, name)),
            inspect.signature(getattr(PrometheusMetrics, name)),
        )
        assert list(base.parameters) == list(ours.parameters), name


def test_hook_values(metrics: PrometheusMetrics) -> None:
    m = metrics
    drive_all_hooks(m)
    assert (
        value(
            m,
            "streamgen_build_info",
            version=streamgen.__version__,
            python=__import__("platform").python_version(),
        )
        == 1
    )
    assert value(m, "streamgen_records_in_total", source="kafka") == 300
    assert value(m, "streamgen_records_out_total", sink="scores") == 300
    assert value(m, "streamgen_records_out_total", sink="alerts") == 3
    assert value(m, "streamgen_dead_letters_total", reason="not_json") == 6
    assert value(m, "streamgen_dead_letters_total", reason="late") == 3
    assert value(m, "streamgen_batch_records_count") == 3
    assert value(m, "streamgen_batch_records_sum") == 300
    assert value(m, "streamgen_batch_windows_sum") == 30
    assert value(m, "streamgen_stage_latency_seconds_count", stage="learn") == 3
    assert value(m, "streamgen_stage_latency_seconds_bucket", stage="decode", le="0.001") == 3
    # NaN dropped, the negative latency (clock skew) clamped to 0.
    assert value(m, "streamgen_end_to_end_latency_seconds_count") == 12
    assert value(m, "streamgen_end_to_end_latency_seconds_bucket", le="0.005") == 3
    assert value(m, "streamgen_consumer_lag_records", topic="sensors", partition="2") == 202
    assert value(m, "streamgen_last_event_timestamp_seconds") == 1_700_000_002.0
    assert value(m, "streamgen_train_steps_total", model="sota") == 3
    assert value(m, "streamgen_train_steps_total", model="rvae") == 3
    assert value(m, "streamgen_train_steps_skipped_total", model="rvae") == 3
    assert value(m, "streamgen_train_steps_skipped_total", model="sota") == 0
    assert value(m, "streamgen_train_loss", model="sota") == pytest.approx(0.5 / 3)
    assert value(m, "streamgen_train_loss", model="rvae") == 1.2  # NaN loss not recorded
    assert value(m, "streamgen_train_kl", model="rvae") == 0.3
    assert value(m, "streamgen_model_rollbacks_total", model="rvae") == 1
    assert value(m, "streamgen_model_rollbacks_total", model="sota") == 0
    assert value(m, "streamgen_calibrated_score_count", model="sota") == 15
    assert value(m, "streamgen_calibrated_score_bucket", model="sota", le="4.0") == 9
    assert value(m, "streamgen_anomalies_total", model="sota") == 6
    assert value(m, "streamgen_forecast_abs_error", model="sota") == 0.25
    assert value(m, "streamgen_alert_events_total", state="firing") == 3
    assert value(m, "streamgen_alert_events_total", state="resolved") == 1
    assert value(m, "streamgen_alerts_firing") == 3
    assert value(m, "streamgen_keys_tracked") == len(RECORD_KEYS)
    assert value(m, "streamgen_keys_evicted_total", reason="idle") == 3
    assert value(m, "streamgen_checkpoints_total", result="ok") == 3
    assert value(m, "streamgen_checkpoints_total", result="error") == 1
    assert value(m, "streamgen_checkpoint_last_success_timestamp_seconds") == 1_700_000_102.0
    assert value(m, "streamgen_checkpoint_last_duration_seconds") == 1.5
    assert value(m, "streamgen_healthy") == 1
    m.healthy(False)
    assert value(m, "streamgen_healthy") == 0
    assert 0 < value(m, "streamgen_start_time_seconds") <= time.time()
    assert value(m, "process_resident_memory_bytes") is not None


def test_fresh_metrics_start_sane(metrics: PrometheusMetrics) -> None:
    m = metrics
    assert value(m, "streamgen_alert_events_total", state="firing") == 0
    assert value(m, "streamgen_checkpoint_last_success_timestamp_seconds") == 0
    assert value(m, "streamgen_alerts_firing") == 0
    # Zero-sized increments create no series (nothing happened yet).
    m.records_in(0, "kafka")
    m.dead_lettered(0, "late")
    assert value(m, "streamgen_records_in_total", source="kafka") is None
    assert value(m, "streamgen_dead_letters_total", reason="late") is None


def test_private_registries_do_not_clash() -> None:
    reg = CollectorRegistry()
    a = PrometheusMetrics(reg, process_metrics=False)
    b = PrometheusMetrics()
    a.records_in(5, "file")
    assert value(b, "streamgen_records_in_total", source="file") is None
    assert a.registry is reg and value(a, "process_resident_memory_bytes") is None


def test_naming_conventions(metrics: PrometheusMetrics) -> None:
    drive_all_hooks(metrics)
    for fam in metrics.registry.collect():
        assert fam.name.startswith(("streamgen_", "process_")), fam.name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.name
        if fam.type == "info":
            assert fam.name == "streamgen_build"


def test_no_label_value_is_a_record_key(metrics: PrometheusMetrics) -> None:
    drive_all_hooks(metrics)
    labels = {
        (fam.name, k, v)
        for fam in metrics.registry.collect()
        for s in fam.samples
        for k, v in s.labels.items()
    }
    values = {v for _, _, v in labels}
    assert not values & set(RECORD_KEYS)
    allowed = {
        "source",
        "sink",
        "reason",
        "stage",
        "model",
        "topic",
        "partition",
        "state",
        "result",
        "le",
        "version",
        "python",
    }
    assert {k for _, k, _ in labels} <= allowed


def test_label_cardinality_is_bounded() -> None:
    m = PrometheusMetrics(max_label_values=8, process_metrics=False)
    # A buggy caller passing record keys as reasons cannot create unbounded series.
    for key in RECORD_KEYS:
        m.dead_lettered(1, reason=key)
    reasons = {
        s.labels["reason"]
        for fam in m.registry.collect()
        if fam.name == "streamgen_dead_letters"
        for s in fam.samples
        if s.name.endswith("_total")
    }
    assert len(reasons) == 9 and OVERFLOW_LABEL in reasons
    assert value(m, "streamgen_dead_letters_total", reason=OVERFLOW_LABEL) == len(RECORD_KEYS) - 8


# -- exposition -------------------------------------------------------------------------------


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@pytest.fixture
def server(metrics: PrometheusMetrics):
    drive_all_hooks(metrics)
    srv = MetricsServer.for_metrics(metrics, port=0).start()
    yield srv
    srv.stop()


def test_scrape_and_promtool_check_metrics(server: MetricsServer) -> None:
    status, body, headers = scrape(f"{server.url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    names = {fam.name for fam in text_string_to_metric_families(text)}
    assert {
        "streamgen_records_in",
        "streamgen_build_info",
        "streamgen_end_to_end_latency_seconds",
    } <= (names)
    if PROMTOOL is None:
        pytest.skip("promtool not installed (apt-get install prometheus); exposition not linted")
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_openmetrics_and_gzip(server: MetricsServer) -> None:
    status, body, headers = scrape(
        f"{server.url}/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")
    status, body, headers = scrape(f"{server.url}/metrics", {"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert b"streamgen_records_in_total" in gzip.decompress(body)


def test_other_paths(server: MetricsServer) -> None:
    assert scrape(f"{server.url}/nope")[0] == 404
    assert scrape(f"{server.url}/")[0] == 200
    req = urllib.request.Request(f"{server.url}/healthz", method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b""


# -- probes -----------------------------------------------------------------------------------


def test_healthz_follows_loop_heartbeat() -> None:
    m = PrometheusMetrics(process_metrics=False)
    with MetricsServer.for_metrics(m, port=0, max_silence_seconds=0.3) as srv:
        assert srv.port > 0
        assert scrape(f"{srv.url}/healthz")[0] == 200
        time.sleep(0.5)  # no hook called: the loop looks stuck
        status, body, _ = scrape(f"{srv.url}/healthz")
        assert status == 503 and b"not alive" in body
        m.batch(1, 1)
        assert scrape(f"{srv.url}/healthz")[0] == 200


def test_readyz_default_follows_healthy_report() -> None:
    m = PrometheusMetrics(process_metrics=False)
    with MetricsServer.for_metrics(m, port=0) as srv:
        assert scrape(f"{srv.url}/readyz")[0] == 200
        m.healthy(False)  # e.g. broker unreachable: unready, but still alive
        assert scrape(f"{srv.url}/readyz")[0] == 503
        assert scrape(f"{srv.url}/healthz")[0] == 200
        m.healthy(True)
        assert scrape(f"{srv.url}/readyz")[0] == 200


def test_readyz_uses_ready_callable() -> None:
    m = PrometheusMetrics(process_metrics=False)
    state = {"ready": False}

    def ready() -> bool:
        if state.get("boom"):
            raise RuntimeError("assignment lost")
        return state["ready"]

    with MetricsServer.for_metrics(m, port=0, ready=ready) as srv:
        status, body, _ = scrape(f"{srv.url}/readyz")
        assert status == 503 and body == b"not ready\n"
        state["ready"] = True
        assert scrape(f"{srv.url}/readyz")[0] == 200
        state["boom"] = True
        status, body, _ = scrape(f"{srv.url}/readyz")
        assert status == 503 and b"assignment lost" in body
        assert scrape(f"{srv.url}/healthz")[0] == 200


def test_plain_server_defaults_and_lifecycle() -> None:
    m = PrometheusMetrics(process_metrics=False)
    srv = MetricsServer(m.registry, "127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.start()
    port = srv.port
    assert srv.start() is srv and srv.port == port  # idempotent
    assert scrape(f"{srv.url}/healthz")[0] == 200
    assert scrape(f"{srv.url}/readyz")[0] == 200  # no ready callable: follows liveness
    srv.stop()
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
