"""Prometheus metrics and the health/metrics HTTP endpoint.

:class:`PrometheusMetrics` implements every hook of :class:`streamgen.core.ports.Metrics` on a
private :class:`~prometheus_client.CollectorRegistry`; :class:`MetricsServer` serves it with the
standard library's threading HTTP server: ``/metrics`` (exposition, OpenMetrics when asked),
``/healthz`` (liveness), ``/readyz`` (readiness) and, when given a status provider, the live
status page at ``/`` with its data at ``/status.json`` (:mod:`streamgen.io.status`).

Names follow docs/architecture.md, "Metrics and health": ``streamgen_`` prefix, base units,
``_total`` on counters, and only bounded labels. No hook takes a record key; on top of that
every label keeps at most ``max_label_values`` distinct values per metric and maps the rest
to ``"other"``, so a bug upstream cannot blow up the series count.

Metrics (name, type, labels, meaning):

``streamgen_build_info`` (gauge, an info metric; labels: version, python)
    Always 1; the package and Python versions.
``streamgen_start_time_seconds`` (gauge)
    Wall time (epoch s) the metrics were created.
``streamgen_healthy`` (gauge)
    1 if the process can reach its source and make progress (last ``healthy()`` report).
``streamgen_records_in_total`` (counter; labels: source)
    Raw messages read (kafka, file, synthetic).
``streamgen_records_out_total`` (counter; labels: sink)
    Rows written (scores, continuations, alerts, ...).
``streamgen_dead_letters_total`` (counter; labels: reason)
    Records sent to the dead-letter sink, by reason code.
``streamgen_batch_records`` (histogram)
    Records per micro-batch.
``streamgen_batch_windows`` (histogram)
    Windows scored per micro-batch.
``streamgen_stage_latency_seconds`` (histogram; labels: stage)
    Time per batch in one stage (decode, window, score, learn, emit, checkpoint).
``streamgen_end_to_end_latency_seconds`` (histogram)
    Per record: source timestamp to score emitted.
``streamgen_consumer_lag_records`` (gauge; labels: topic, partition)
    High watermark minus consumer position.
``streamgen_last_event_timestamp_seconds`` (gauge)
    Event time (epoch s) of the newest record in state.
``streamgen_train_steps_total`` (counter; labels: model)
    Optimizer steps applied.
``streamgen_train_steps_skipped_total`` (counter; labels: model)
    Steps skipped (non-finite loss, exploding gradient).
``streamgen_train_loss`` (gauge; labels: model)
    Loss of the last applied step.
``streamgen_train_kl`` (gauge; labels: model)
    KL term of the last applied step (RVAE).
``streamgen_model_rollbacks_total`` (counter; labels: model)
    Rollbacks to the last good weights.
``streamgen_calibrated_score`` (histogram; labels: model)
    Calibrated score of every scored window.
``streamgen_anomalies_total`` (counter; labels: model)
    Windows flagged anomalous.
``streamgen_forecast_abs_error`` (gauge; labels: model)
    Mean abs one-step forecast error of the last batch.
``streamgen_alert_events_total`` (counter; labels: state)
    Alert transitions (firing, resolved).
``streamgen_alerts_firing`` (gauge)
    Alerts open right now.
``streamgen_keys_tracked`` (gauge)
    Keys with window state in memory.
``streamgen_keys_evicted_total`` (counter; labels: reason)
    Keys evicted (capacity, idle).
``streamgen_checkpoints_total`` (counter; labels: result)
    Checkpoints attempted (ok, error).
``streamgen_checkpoint_last_success_timestamp_seconds`` (gauge)
    Wall time (epoch s) of the last good checkpoint; 0 = none.
``streamgen_checkpoint_last_duration_seconds`` (gauge)
    Duration of the last checkpoint (good or failed).

Histograms also export ``_bucket``/``_sum``/``_count`` series and counters a ``_created``
gauge (client_python's default). With ``process_metrics=True`` the standard ``process_*``
collector (CPU, memory, open fds, start time) is registered too.

Probes: ``/healthz`` is liveness ("is the loop still turning?"): with
:meth:`MetricsServer.for_metrics` it fails once no hook has been called for
``max_silence_seconds``. ``/readyz`` is readiness: the ``ready`` callable given by the caller,
by default the last :meth:`PrometheusMetrics.healthy` report. A broker outage therefore makes the
process unready but not dead, so an orchestrator does not restart it in a loop.

Examples
--------
>>> import urllib.request
>>> metrics = PrometheusMetrics()
>>> metrics.records_in(3, source="kafka")
>>> with MetricsServer(metrics.registry, port=0, ready=lambda: True) as server:
...     body = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
>>> 'streamgen_records_in_total{source="kafka"} 3.0' in body
True
"""

from __future__ import annotations

import gzip
import json
import math
import platform
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted

import streamgen
from streamgen.core.ports import Metrics

__all__ = ["MetricsServer", "PrometheusMetrics"]

# Buckets. Batches run from a handful of records to batch.max_records (1024 by default).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
# A stage takes from sub-millisecond (decode of a small batch) to seconds (a checkpoint).
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# End to end includes producer delay and consumer lag: milliseconds live, minutes when behind.
E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
# zscore calibration gives z values (threshold 4 by default); quantile gives ratios around 1.
SCORE_BUCKETS = (-2, -1, 0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50)
OVERFLOW_LABEL = "other"
MAX_LABEL_CHARS = 64


class _LabelGuard:
    """Keeps each (metric, label) pair to a bounded set of values."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, metric: str, label: str, value: object) -> str:
        text = str(value)[:MAX_LABEL_CHARS]
        seen = self._seen.setdefault((metric, label), set())
        if text in seen:
            return text
        with self._lock:
            if len(seen) >= self.max_values:
                return OVERFLOW_LABEL
            seen.add(text)
        return text


class PrometheusMetrics(Metrics):
    """Every :class:`~streamgen.core.ports.Metrics` hook, exported to Prometheus.

    Parameters
    ----------
    registry
        Registry to register on; a new private one when None (never the global default, so
        several pipelines and tests can live in one process).
    process_metrics
        Also register the standard ``process_*`` collector.
    max_label_values
        Distinct values kept per label of each metric; further values become ``"other"``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        process_metrics: bool = True,
        max_label_values: int = 64,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._label = _LabelGuard(max_label_values)
        self._healthy_flag = True
        self._last_beat = time.monotonic()
        r = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def histogram(name: str, doc: str, buckets: Sequence[float], *labels: str) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        Info("streamgen_build", "streamgen build information.", registry=r).info(
            {"version": streamgen.__version__, "python": platform.python_version()}
        )
        gauge("streamgen_start_time_seconds", "Wall time the metrics were created.").set(
            time.time()
        )
        self._healthy = gauge(
            "streamgen_healthy", "1 if the source is reachable and the loop progresses."
        )
        self._healthy.set(1)
        if process_metrics:
            ProcessCollector(registry=r)

        self._records_in = counter("streamgen_records_in", "Raw messages read.", "source")
        self._records_out = counter("streamgen_records_out", "Rows written to sinks.", "sink")
        self._dead = counter(
            "streamgen_dead_letters", "Records sent to the dead-letter sink.", "reason"
        )
        self._batch_records = histogram(
            "streamgen_batch_records", "Records per micro-batch.", BATCH_BUCKETS
        )
        self._batch_windows = histogram(
            "streamgen_batch_windows", "Windows scored per micro-batch.", BATCH_BUCKETS
        )
        self._stage = histogram(
            "streamgen_stage_latency_seconds", "Time per batch in a stage.", STAGE_BUCKETS, "stage"
        )
        self._e2e = histogram(
            "streamgen_end_to_end_latency_seconds",
            "Per record: source timestamp to score emitted.",
            E2E_BUCKETS,
        )
        self._lag = gauge(
            "streamgen_consumer_lag_records",
            "Messages between consumer position and high watermark.",
            "topic",
            "partition",
        )
        self._last_event = gauge(
            "streamgen_last_event_timestamp_seconds", "Event time of the newest record in state."
        )
        self._steps = counter("streamgen_train_steps", "Optimizer steps applied.", "model")
        self._skipped = counter(
            "streamgen_train_steps_skipped",
            "Optimizer steps skipped (non-finite loss or exploding gradient).",
            "model",
        )
        self._loss = gauge("streamgen_train_loss", "Loss of the last applied step.", "model")
        self._kl = gauge("streamgen_train_kl", "KL term of the last applied step.", "model")
        self._rollbacks = counter(
            "streamgen_model_rollbacks", "Rollbacks to the last good weights.", "model"
        )
        self._scores = histogram(
            "streamgen_calibrated_score", "Calibrated score per window.", SCORE_BUCKETS, "model"
        )
        self._anomalies = counter("streamgen_anomalies", "Windows flagged anomalous.", "model")
        self._forecast = gauge(
            "streamgen_forecast_abs_error",
            "Mean absolute one-step forecast error of the last batch (normalized units).",
            "model",
        )
        self._alert_events = counter("streamgen_alert_events", "Alert transitions.", "state")
        self._alerts_firing = gauge("streamgen_alerts_firing", "Alerts open right now.")
        self._keys = gauge("streamgen_keys_tracked", "Keys with window state in memory.")
        self._evicted = counter("streamgen_keys_evicted", "Keys evicted.", "reason")
        self._checkpoints = counter("streamgen_checkpoints", "Checkpoints attempted.", "result")
        self._offset_resets = counter(
            "streamgen_offset_resets",
            "Partitions read again from their start because the saved offset lay outside "
            "their log (reason: beyond_end = topic deleted and created again, or truncated).",
            "reason",
        )
        self._progress = gauge(
            "streamgen_last_progress_timestamp_seconds",
            "Wall time at which committed offsets last moved forward (0 = not yet).",
        )
        self._ckpt_success = gauge(
            "streamgen_checkpoint_last_success_timestamp_seconds",
            "Wall time of the last successful checkpoint (0 = none yet).",
        )
        self._ckpt_duration = gauge(
            "streamgen_checkpoint_last_duration_seconds",
            "Duration of the last checkpoint, successful or not.",
        )
        # Known label values start at 0 so that rate()/increase() see the first increment.
        for state in ("firing", "resolved"):
            self._alert_events.labels(state)
        self._models: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------

    def _beat(self) -> None:
        self._last_beat = time.monotonic()

    def _model(self, metric: str, model: str) -> str:
        value = self._label(metric, "model", model)
        if value not in self._models:
            self._models.add(value)
            for counter in (self._steps, self._skipped, self._rollbacks, self._anomalies):
                counter.labels(value)
        return value

    def alive(self, max_silence_seconds: float | None = None) -> bool:
        """Liveness: some hook was called within ``max_silence_seconds`` (always True when
        None). The engine calls hooks every loop turn, so silence means a stuck loop."""
        if max_silence_seconds is None:
            return True
        return time.monotonic() - self._last_beat <= max_silence_seconds

    def is_healthy(self) -> bool:
        """The last :meth:`healthy` report (True until the first one)."""
        return self._healthy_flag

    # -- hooks -----------------------------------------------------------------------------

    def records_in(self, n: int, source: str) -> None:
        self._beat()
        if n > 0:
            self._records_in.labels(self._label("records_in", "source", source)).inc(n)

    def records_out(self, n: int, sink: str) -> None:
        self._beat()
        if n > 0:
            self._records_out.labels(self._label("records_out", "sink", sink)).inc(n)

    def dead_lettered(self, n: int, reason: str) -> None:
        self._beat()
        if n > 0:
            self._dead.labels(self._label("dead_letters", "reason", reason)).inc(n)

    def batch(self, n_records: int, n_windows: int) -> None:
        self._beat()
        self._batch_records.observe(n_records)
        self._batch_windows.observe(n_windows)

    def stage_latency(self, stage: str, seconds: float) -> None:
        self._beat()
        if math.isfinite(seconds):
            self._stage.labels(self._label("stage", "stage", stage)).observe(max(seconds, 0.0))

    def end_to_end_latency(self, seconds: Sequence[float]) -> None:
        self._beat()
        observe = self._e2e.observe
        for s in seconds:
            s = float(s)
            if math.isfinite(s):
                # Clock skew between producer and consumer can make a latency negative.
                observe(s if s > 0.0 else 0.0)

    def consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self._beat()
        self._lag.labels(
            self._label("lag", "topic", topic), self._label("lag", "partition", int(partition))
        ).set(max(lag, 0))

    def last_event_timestamp(self, ts_seconds: float) -> None:
        self._beat()
        self._last_event.set(ts_seconds)

    def train_step(self, model: str, loss: float, kl: float | None, skipped: bool) -> None:
        self._beat()
        label = self._model("train", model)
        if skipped:
            self._skipped.labels(label).inc()
            return
        self._steps.labels(label).inc()
        if math.isfinite(loss):
            self._loss.labels(label).set(loss)
        if kl is not None and math.isfinite(kl):
            self._kl.labels(label).set(kl)

    def rollback(self, model: str) -> None:
        self._beat()
        self._rollbacks.labels(self._model("train", model)).inc()

    def scores(self, model: str, calibrated: Sequence[float]) -> None:
        self._beat()
        observe = self._scores.labels(self._model("train", model)).observe
        for s in calibrated:
            s = float(s)
            if not math.isnan(s):
                observe(s)

    def anomalies(self, model: str, n: int) -> None:
        self._beat()
        label = self._model("train", model)
        if n > 0:
            self._anomalies.labels(label).inc(n)

    def alert_event(self, state: str) -> None:
        self._beat()
        self._alert_events.labels(self._label("alert_events", "state", state)).inc()

    def alerts_firing(self, n: int) -> None:
        self._beat()
        self._alerts_firing.set(n)

    def keys_tracked(self, n: int) -> None:
        self._beat()
        self._keys.set(n)

    def keys_evicted(self, n: int, reason: str) -> None:
        self._beat()
        if n > 0:
            self._evicted.labels(self._label("evicted", "reason", reason)).inc(n)

    def checkpoint(self, seconds: float, ts_seconds: float, ok: bool) -> None:
        self._beat()
        self._checkpoints.labels("ok" if ok else "error").inc()
        self._ckpt_duration.set(seconds)
        if ok:
            self._ckpt_success.set(ts_seconds)

    def forecast_error(self, model: str, abs_error: float) -> None:
        self._beat()
        if math.isfinite(abs_error):
            self._forecast.labels(self._model("train", model)).set(abs_error)

    def healthy(self, ok: bool) -> None:
        self._beat()
        self._healthy_flag = bool(ok)
        self._healthy.set(1 if ok else 0)

    def progress(self, ts_seconds: float) -> None:
        self._beat()
        self._progress.set(ts_seconds)

    def offset_reset(self, reason: str) -> None:
        self._beat()
        self._offset_resets.labels(self._label("offset_resets", "reason", reason)).inc()


# -- HTTP endpoint -----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: MetricsServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._respond(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(head=True)

    def _respond(self, head: bool) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(app.registry)
            headers = {"Content-Type": content_type}
            if gzip_accepted(self.headers.get("Accept-Encoding", "")):
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, headers, head)
        elif path == "/healthz":
            self._probe(app.alive, "alive", "not alive", head)
        elif path == "/readyz":
            self._probe(app.ready, "ready", "not ready", head)
        elif path == "/" and app.status is not None:
            self._send(200, app.page(), {"Content-Type": "text/html; charset=utf-8",
                                         "Cache-Control": "no-cache"}, head)
        elif path == "/status.json" and app.status is not None:
            try:
                body = json.dumps(app.status(), separators=(",", ":"),
                                  allow_nan=False, default=str).encode()
                status = 200
            except Exception as exc:  # the page shows the error; the server stays up
                body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
                status = 500
            self._send(status, body, {"Content-Type": "application/json",
                                      "Cache-Control": "no-store"}, head)
        elif path == "/":
            body = b"streamgen: /metrics /healthz /readyz\n"
            self._send(200, body, {"Content-Type": "text/plain; charset=utf-8"}, head)
        else:
            self._send(404, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"}, head)

    def _probe(self, check: Callable[[], bool], ok: str, bad: str, head: bool) -> None:
        try:
            passed = bool(check())
            text = ok if passed else bad
        except Exception as exc:  # a failing check means "no", never a crashed endpoint
            passed, text = False, f"{bad}: {type(exc).__name__}: {exc}"
        body = (text + "\n").encode()
        self._send(
            200 if passed else 503, body, {"Content-Type": "text/plain; charset=utf-8"}, head
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # scrapes and probes every few seconds would drown the logs


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, in a daemon thread.

    Parameters
    ----------
    registry
        What ``/metrics`` exposes.
    host, port
        Where to listen; ``port=0`` picks a free port (read it back from :attr:`port`).
    alive
        Liveness check for ``/healthz`` (200 when it returns True, else 503). None = the
        server answering is proof enough.
    ready
        Readiness check for ``/readyz`` (200 only when it returns True, else 503). None =
        the same as ``alive``.
    status
        What ``/status.json`` answers (a JSON-able mapping, built per request); with it
        ``/`` serves the status page (:func:`streamgen.io.status.page_html`). None = ``/``
        lists the endpoints.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        alive: Callable[[], bool] | None = None,
        ready: Callable[[], bool] | None = None,
        status: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.status = status
        self._page: bytes | None = None
        self.host = host
        self._requested_port = port
        self.alive: Callable[[], bool] = alive if alive is not None else (lambda: True)
        self.ready: Callable[[], bool] = ready if ready is not None else self.alive
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def page(self) -> bytes:
        """The status page's HTML (read once)."""
        if self._page is None:
            from streamgen.io.status import page_html

            self._page = page_html()
        return self._page

    @classmethod
    def for_metrics(
        cls,
        metrics: PrometheusMetrics,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ready: Callable[[], bool] | None = None,
        max_silence_seconds: float | None = None,
        status: Callable[[], Mapping[str, Any]] | None = None,
    ) -> MetricsServer:
        """A server whose probes follow ``metrics``.

        ``/healthz`` is :meth:`PrometheusMetrics.alive` with ``max_silence_seconds``;
        ``/readyz`` is ``ready`` when given, else alive and :meth:`PrometheusMetrics.is_healthy`.
        """

        def alive() -> bool:
            return metrics.alive(max_silence_seconds)

        def default_ready() -> bool:
            return alive() and metrics.is_healthy()

        return cls(
            metrics.registry,
            host,
            port,
            alive=alive,
            ready=ready if ready is not None else default_ready,
            status=status,
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server_cls = _Server6 if ":" in self.host else _Server
        server = server_cls((self.host, self._requested_port), _Handler)
        server.app = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="streamgen-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
