"""The long-running Kafka consumer (docs/architecture.md, "Service loop and delivery guarantees").

:class:`Service` polls micro-batches from a :class:`~streamgen.io.kafka.KafkaSource`, runs
them through the :class:`~streamgen.core.engine.Engine`, and every
``checkpoint.interval_seconds``:

1. flushes the sinks (the producer): every row of every folded record is on the broker;
2. writes state atomically under ``checkpoint.dir``: ``model.pt`` and, per partition,
   ``partitions/<topic>-<p>.pt`` with that partition's keys, the records the reorder gate
   (``window.late_policy: reorder``) holds from it, and the offset of the last record taken into
   that state (folded, dead-lettered or held);
3. commits ``offset + 1`` to Kafka (lag monitoring, and the start position of a partition that
   has no checkpoint yet).

On assignment a partition's state is loaded and the consumer seeks to its checkpoint offset
+ 1 (the checkpoint is the source of truth); on revocation its state is checkpointed, then its
keys leave the engine; a partition *lost* to a forced eviction is dropped without a write.
Outputs are at-least-once, duplicates are bounded by one checkpoint interval, no input is
skipped and no point is folded twice into a window.

SIGTERM/SIGINT finish the batch, checkpoint, commit and close the consumer (it leaves the
group); a second signal stops at once. While the broker is unreachable the service keeps
retrying with exponential backoff (up to ``kafka.reconnect_backoff_max_seconds``) and reports
itself unhealthy (``metrics.healthy(False)``, ``/readyz`` 503).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamgen.config import PipelineConfig
from streamgen.core import checkpoint
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import Metrics, RawMessage, Sink
from streamgen.core.runtime import freeze_heap
from streamgen.errors import CheckpointError, ConfigError, SinkError, SourceError
from streamgen.io.kafka import (
    TP,
    KafkaSink,
    KafkaSource,
    describe_security,
    make_producer,
)

__all__ = ["JsonFormatter", "PartitionCheckpoints", "Service", "ServiceStats", "setup_logging"]

log = logging.getLogger("streamgen.service")


# -- logging ------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the record's ``fields`` extra."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _RateLimit(logging.Filter):
    """kafka-python logs every failed reconnect at ERROR; keep one line per message per 30 s."""

    def __init__(self, period_s: float = 30.0) -> None:
        super().__init__()
        self.period_s = period_s
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.period_s:
            return False
        self._last[key] = now
        return True


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Structured JSON logs on stderr (replaces a handler installed by an earlier call)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_streamgen", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._streamgen = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RateLimit())
    root.addHandler(handler)
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ConfigError(f"--log-level: unknown level {level!r}")
    root.setLevel(lvl)
    # kafka-python's INFO lines describe every connection and group step; keep its warnings.
    logging.getLogger("kafka").setLevel(max(lvl, logging.WARNING))


def _fields(**kw: Any) -> dict[str, Any]:
    return {"fields": kw}


# -- checkpoint layout --------------------------------------------------------------------------


class PartitionCheckpoints:
    """``model.pt`` + ``partitions/<topic>-<p>.pt`` under one directory (may be shared by the
    members of a consumer group: each partition file is written only by its current owner)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.model_path = self.root / "model.pt"

    def partition_path(self, tp: TP) -> Path:
        return self.root / "partitions" / f"{tp[0]}-{tp[1]}.pt"

    def save_model(self, engine: Engine) -> None:
        checkpoint.save_atomic(checkpoint.model_state(engine), self.model_path)

    def save_partition(self, engine: Engine, tp: TP, keys: list[str], offset: int) -> None:
        state = {
            "format": checkpoint.FORMAT_VERSION,
            "kind": "partition",
            "topic": tp[0],
            "partition": tp[1],
            "offset": int(offset),
            "channels": list(engine.channels or []),
            "keys": checkpoint.keys_state(engine, keys) if engine.store is not None else None,
            "held": checkpoint.held_state(engine, [tp]),
        }
        checkpoint.save_atomic(state, self.partition_path(tp))

    def load_model(self) -> dict[str, Any] | None:
        return checkpoint.load(self.model_path) if self.model_path.is_file() else None

    def load_partition(self, tp: TP) -> dict[str, Any] | None:
        path = self.partition_path(tp)
        return checkpoint.load(path) if path.is_file() else None


# -- the service --------------------------------------------------------------------------------


class TeeSink:
    """Sends every row to several sinks (Kafka plus a local file in the demo)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def add(self, row: Mapping[str, object]) -> None:
        for s in self.sinks:
            s.add(row)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()

    def discard(self) -> None:
        for s in self.sinks:
            if hasattr(s, "discard"):
                s.discard()


@dataclass
class ServiceStats:
    """Running totals, readable from another thread (demo progress, benchmarks)."""

    records: int = 0
    dead_letters: int = 0
    windows: int = 0
    anomalies: int = 0
    batches: int = 0
    checkpoints: int = 0
    rewinds: int = 0
    lag: int | None = None
    alerts_firing: int = 0
    healthy: bool = False
    assigned: list[TP] = field(default_factory=list)
    resumed: dict[str, int] = field(default_factory=dict)  # "topic-p" -> checkpoint offset
    first_record_s: float | None = None  # time.time() of the first processed batch
    last_record_s: float | None = None


class Service:
    """Kafka consumer service around one :class:`Engine`.

    Parameters
    ----------
    cfg
        The pipeline (``kafka``, ``checkpoint``, ``metrics`` sections drive the service).
    metrics
        Instrumentation; :class:`~streamgen.io.metrics.PrometheusMetrics` in production.
    init_from
        Checkpoint whose model weights warm-start the engine when ``checkpoint.dir`` holds no
        model yet (only the weights are used; keys and offsets are not).
    kafka_options
        Raw kafka-python client options (e.g. ``session_timeout_ms``), given to the consumer
        and/or producer by name.
    tee
        Extra sinks receiving a copy of each output (scores, alerts, ...).
    serve_metrics
        Start the ``/metrics`` ``/healthz`` ``/readyz`` server when ``metrics.enabled`` and
        ``metrics`` is Prometheus-backed.
    """

    def __init__(
        self,
        cfg: PipelineConfig,
        *,
        metrics: Metrics | None = None,
        init_from: str | Path | None = None,
        kafka_options: Mapping[str, Any] | None = None,
        tee: Sinks | None = None,
        serve_metrics: bool = True,
    ) -> None:
        if not cfg.kafka.topics and not cfg.kafka.pattern:
            raise ConfigError("kafka.topics: set the input topics (or kafka.pattern)")
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.init_from = init_from
        # A micro-batch waits at most batch.max_wait_ms; so should a fetch the broker holds
        # open for want of data (kafka-python's default is 500 ms).
        self.kafka_options = {"fetch_max_wait_ms": max(1, cfg.batch.max_wait_ms),
                              **(kafka_options or {})}
        self.tee = tee or Sinks()
        self.serve_metrics = serve_metrics
        self.engine = Engine(cfg, Sinks(), self.metrics)
        self.ckpt = PartitionCheckpoints(cfg.checkpoint.dir) if cfg.checkpoint.dir else None
        self.stats = ServiceStats()
        self.source: KafkaSource | None = None
        self.producer: Any = None
        self.metrics_server: Any = None
        self.owned: set[TP] = set()
        self._saved: dict[TP, int] = {}  # partition -> offset in its checkpoint file
        self._committed: dict[TP, int] = {}  # partition -> last committed next offset
        # Monotonic time of the last commit that moved an offset forward (or of the start):
        # no progress for health.stall_seconds while records wait = stalled.
        self._progress_t = time.monotonic()
        self._first_seen: dict[TP, int] = {}  # partition -> first offset polled
        self._held: dict[TP, int] = {}  # partition -> records its checkpoint put back in the gate
        self._model_saved_at = -1  # engine.records_total when model.pt was last written
        self._problems: dict[str, str] = {}
        self._stop = threading.Event()
        self._old_handlers: dict[int, Any] = {}
        self._signalled = 0
        self._aborted = False

    # -- control --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the batch, checkpoint, commit and close (thread-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, max_seconds: float | None = None) -> int:
        """Run until stopped (signal, :meth:`stop`, or ``max_seconds``); 0 ok, 1 failure."""
        self._install_signals()
        try:
            self._load_model()
            self._start_metrics_server()
            if not self._connect():
                return 0
            freeze_heap()  # everything built so far lives as long as the loop
            self._loop(max_seconds)
            return 0 if self._shutdown() else 1
        except BaseException:
            # Interrupted anywhere (a second signal, a bug): in-memory state may be half a
            # batch ahead of its outputs, so closing must not checkpoint it. The last
            # checkpoint stands; a restart resumes from it.
            self._aborted = True
            raise
        finally:
            self._teardown()

    # -- health ---------------------------------------------------------------------------
    def _problem(self, what: str, detail: str) -> None:
        if what not in self._problems:
            log.warning("unhealthy", extra=_fields(reason=what, detail=detail))
        self._problems[what] = detail
        self._report_health()

    def _resolved(self, what: str) -> None:
        if self._problems.pop(what, None) is not None:
            log.info("recovered", extra=_fields(reason=what))
        self._report_health()

    def _report_health(self) -> None:
        ok = not self._problems and self.source is not None
        self.stats.healthy = ok
        self.metrics.healthy(ok)

    # -- start ----------------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signalled += 1
        if self._signalled > 1:
            raise KeyboardInterrupt  # second signal: stop now, the last checkpoint stands
        log.info("stopping", extra=_fields(signal=signal.Signals(signum).name))
        self._stop.set()

    def _load_model(self) -> None:
        state = self.ckpt.load_model() if self.ckpt is not None else None
        source = str(self.ckpt.model_path) if state is not None and self.ckpt else None
        if state is None and self.init_from is not None:
            state, source = checkpoint.load(self.init_from), str(self.init_from)
        if state is None:
            return
        try:
            checkpoint.load_model_state(self.engine, state)
        except Exception as exc:  # shape mismatch between checkpoint and pipeline
            raise CheckpointError(f"{source}: does not fit this pipeline's model: {exc}") from exc
        assert self.engine.learner is not None
        self._model_saved_at = self.engine.records_total
        log.info("model loaded", extra=_fields(path=source, step=self.engine.learner.step,
                                                channels=self.engine.channels))

    def _start_metrics_server(self) -> None:
        from streamgen.io.metrics import MetricsServer, PrometheusMetrics

        m = self.cfg.metrics
        if not (self.serve_metrics and m.enabled and isinstance(self.metrics, PrometheusMetrics)):
            return
        server = MetricsServer.for_metrics(
            self.metrics, m.host, m.port,
            max_silence_seconds=max(120.0, 6 * self.cfg.checkpoint.interval_seconds),
        )
        try:
            server.start()
        except OSError as exc:
            raise ConfigError(
                f"metrics.port: cannot listen on {m.host}:{m.port}: {exc.strerror}"
            ) from None
        self.metrics_server = server
        log.info("metrics server", extra=_fields(url=server.url))

    def _connect(self) -> bool:
        """Connect producer and consumer, retrying with exponential backoff until stopped."""
        k = self.cfg.kafka
        self.metrics.healthy(False)
        backoff = 0.5
        while not self._stop.is_set():
            producer = None
            try:
                if any((k.scores_topic, k.continuations_topic, k.alerts_topic,
                        k.dead_letter_topic)):
                    producer = make_producer(k, self.kafka_options)
                self.source = KafkaSource(k, self, options=self.kafka_options)
                self.producer = producer
                break
            except SourceError as exc:
                if producer is not None:
                    producer.close(timeout=1)
                self._problem("connect", str(exc))
                log.warning("broker unreachable; retrying",
                            extra=_fields(backoff_seconds=backoff, error=str(exc)))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, k.reconnect_backoff_max_seconds)
        else:
            return False
        self._resolved("connect")
        self.engine.sinks = self._make_sinks()
        log.info("started", extra=_fields(
            bootstrap=k.bootstrap_servers, topics=k.topics or k.pattern, group=k.group_id,
            outputs={"scores": k.scores_topic, "continuations": k.continuations_topic,
                     "alerts": k.alerts_topic, "dead_letters": k.dead_letter_topic},
            checkpoint_dir=self.cfg.checkpoint.dir, security=describe_security(k.security),
            model=self.cfg.model.name, producer=getattr(self.producer, "kind", None),
        ))
        return True

    def _make_sinks(self) -> Sinks:
        k, tee = self.cfg.kafka, self.tee

        def sink(topic: str | None, name: str, extra: Sink | None) -> Sink | None:
            main = None
            if topic:
                main = KafkaSink(self.producer, topic, name=name, metrics=self.metrics,
                                 on_stall=lambda: self._problem("flush", "producer stalled"))
            if main is not None and extra is not None:
                return TeeSink(main, extra)
            return main or extra

        return Sinks(
            scores=sink(k.scores_topic, "scores", tee.scores),
            continuations=sink(k.continuations_topic, "continuations", tee.continuations),
            alerts=sink(k.alerts_topic, "alerts", tee.alerts),
            dead_letters=sink(k.dead_letter_topic, "dead_letters", tee.dead_letters),
        )

    # -- the loop -------------------------------------------------------------------------
    def _loop(self, max_seconds: float | None) -> None:
        assert self.source is not None
        b, interval = self.cfg.batch, self.cfg.checkpoint.interval_seconds
        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        next_ckpt = time.monotonic() + interval
        next_observe = 0.0
        backoff = 0.5
        while not self._stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                break
            try:
                msgs = self.source.poll(b.max_records, b.max_wait_ms)
            except Exception as exc:  # noqa: BLE001 - kafka errors, failed rebalance callbacks
                self._problem("poll", repr(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.kafka.reconnect_backoff_max_seconds)
                continue
            if "poll" in self._problems:
                self._resolved("poll")
            backoff = 0.5
            if msgs:
                self._process(msgs)
            now = time.monotonic()
            if now >= next_observe:
                self._observe()
                next_observe = now + 1.0
            if now >= next_ckpt:
                try:
                    self._checkpoint(sorted(self.owned))
                except SinkError:
                    self._rewind()
                next_ckpt = time.monotonic() + interval

    def _process(self, msgs: list[RawMessage]) -> None:
        try:
            st = self.engine.process(msgs)
        except SinkError as exc:
            log.error("sink failed during a batch", extra=_fields(error=str(exc)))
            self._rewind()
            return
        first = self._first_seen
        if len(first) < len(self.owned):  # all owned partitions seen: no per-record work
            for m in msgs:
                tp = (m.position.topic, m.position.partition)
                if tp not in first:
                    first[tp] = m.position.offset
        now = time.time()
        self.metrics.records_in(len(msgs), "kafka")
        self.metrics.end_to_end_latency(
            [now - m.timestamp_ms / 1000.0 for m in msgs if m.timestamp_ms is not None]
        )
        s = self.stats
        s.records += st.records
        s.dead_letters += st.dead_letters
        s.windows += st.windows
        s.anomalies += st.anomalies
        s.batches += 1
        s.alerts_firing = self.engine.alerter.n_open
        s.first_record_s = s.first_record_s or now
        s.last_record_s = now

    def _observe(self) -> None:
        assert self.source is not None
        if self.source.connected():
            self._resolved("disconnected")
        else:
            self._problem("disconnected", "no live connection to any broker")
        highs = self.source.highwaters()
        lags = self.source.lags(highs)
        for (topic, part), lag in lags.items():
            self.metrics.consumer_lag(topic, part, lag)
        self.stats.lag = sum(lags.values()) if lags else None
        self.stats.assigned = sorted(self.owned)
        self._watch_progress(highs)
        self._check_ranges(highs)
        self._report_health()

    def _check_ranges(self, highs: dict[TP, int]) -> None:
        """A partition whose saved position lies past its high watermark (its topic was
        deleted and created again, or truncated) would wait there for records that never
        come: its state is dropped and it is read from its start, with a log line and a
        count (``streamgen_offset_resets_total{reason="beyond_end"}``)."""
        assert self.source is not None
        for tp, (pos, high) in self.source.beyond_end(highs).items():
            if tp not in self.owned:
                continue
            log.error("saved offset beyond the partition's end: dropping its state and "
                      "reading it from the start", extra=_fields(
                          topic=tp[0], partition=tp[1], position=pos, high_watermark=high))
            self.metrics.offset_reset("beyond_end")
            self._drop([tp])
            self.owned.add(tp)
            self.source.seek_to_beginning(tp)

    def _watch_progress(self, highs: dict[TP, int]) -> None:
        """Stalled: records wait beyond the committed offsets (from the first offset seen,
        before any commit) and no commit moved for ``health.stall_seconds``. The position's
        lag alone would miss a loop that reads, fails to flush and rewinds: it reads to the
        end each time, and the lag looks like zero."""
        waiting = 0
        for tp, high in highs.items():
            done = self._committed.get(tp, self._first_seen.get(tp))
            if done is not None:
                waiting += max(0, high - done)
        idle = time.monotonic() - self._progress_t
        if not waiting:
            self._progress_t = time.monotonic()  # nothing waits: not a stall
            self._resolved("stalled")
        elif idle > self.cfg.health.stall_seconds:
            self._problem("stalled", f"no committed progress for {idle:.0f} s with "
                                     f"{waiting} records waiting")
        else:
            self._resolved("stalled")

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, tps: list[TP], *, blocking_commit: bool = True) -> bool:
        """Flush → write state → commit for ``tps``; False if the state write failed.

        Raises
        ------
        SinkError
            If the sinks could not flush: the checkpoint is aborted (the caller rewinds).
        """
        t0 = time.perf_counter()
        engine = self.engine
        offsets = {tp: engine.offsets[tp] for tp in tps if tp in engine.offsets}
        try:
            # 1. Flush sinks: the rows of every record folded so far are on the broker.
            engine.flush_sinks()
            self._resolved("flush")
            # 2. Write state atomically: model, then each partition's keys and last offset.
            written = self._write_state(offsets) if self.ckpt is not None else []
        except (SinkError, CheckpointError) as exc:
            self.metrics.checkpoint(time.perf_counter() - t0, time.time(), False)
            log.error("checkpoint aborted", extra=_fields(error=str(exc)))
            if isinstance(exc, SinkError):
                raise
            return False
        # 3. Commit offset + 1: lag monitoring, and where a partition without state starts.
        commits = {tp: o + 1 for tp, o in offsets.items() if self._committed.get(tp) != o + 1}
        if commits:
            assert self.source is not None
            try:
                self.source.commit(commits, blocking=blocking_commit)
                self._committed.update(commits)
                self._resolved("commit")
                self._progress_t = time.monotonic()
                self.metrics.progress(time.time())
            except SourceError as exc:
                self._problem("commit", str(exc))
        secs = time.perf_counter() - t0
        self.metrics.checkpoint(secs, time.time(), True)
        self.metrics.stage_latency("checkpoint", secs)
        self.stats.checkpoints += 1
        if written or commits:
            log.info("checkpoint", extra=_fields(
                seconds=round(secs, 4), written=[f"{t}-{p}" for t, p in written],
                offsets={f"{t}-{p}": o for (t, p), o in offsets.items()},
                records=self.stats.records,
            ))
        return True

    def _write_state(self, offsets: dict[TP, int]) -> list[TP]:
        assert self.ckpt is not None
        engine = self.engine
        dirty = [tp for tp, o in offsets.items() if self._saved.get(tp) != o]
        if not dirty:
            return []
        if engine.learner is not None and engine.records_total != self._model_saved_at:
            self.ckpt.save_model(engine)
            self._model_saved_at = engine.records_total
        by_tp: dict[TP, list[str]] = {tp: [] for tp in dirty}
        for key, tp in engine.key_partition.items():
            if tp in by_tp:
                by_tp[tp].append(key)
        for tp in dirty:
            self.ckpt.save_partition(engine, tp, by_tp[tp], offsets[tp])
            self._saved[tp] = offsets[tp]
        return dirty

    # -- partition ownership (called on the consumer's I/O thread inside poll/close) -------
    def on_assigned(self, partitions: list[TP]) -> None:
        resumed = {}
        for tp in partitions:
            self.owned.add(tp)
            offset = self._load_partition(tp)
            if offset is not None:
                assert self.source is not None
                self.source.seek(tp, offset + 1)
                resumed[f"{tp[0]}-{tp[1]}"] = offset
                log.info("partition resumed from checkpoint",
                         extra=_fields(topic=tp[0], partition=tp[1], offset=offset,
                                       held=self._held.get(tp, 0)))
        self.stats.resumed.update(resumed)
        self.stats.assigned = sorted(self.owned)
        log.info("partitions assigned", extra=_fields(
            partitions=[f"{t}-{p}" for t, p in partitions], resumed=resumed))

    def on_revoked(self, partitions: list[TP]) -> None:
        tps = [tp for tp in partitions if tp in self.owned]
        try:
            if tps and self.source is not None and not self._aborted:
                self._checkpoint(tps, blocking_commit=False)
        except SinkError:
            log.error("rows not acknowledged; revoked partitions resume from their previous "
                      "checkpoint", extra=_fields(partitions=[f"{t}-{p}" for t, p in tps]))
            self._discard_pending()
        finally:
            self._drop(tps)
        if tps:
            log.info("partitions revoked",
                     extra=_fields(partitions=[f"{t}-{p}" for t, p in tps]))

    def on_lost(self, partitions: list[TP]) -> None:
        # Another member may own them already: writing their state could overwrite its own.
        tps = [tp for tp in partitions if tp in self.owned]
        self._drop(tps)
        log.warning("partitions lost; their state since the last checkpoint is dropped",
                    extra=_fields(partitions=[f"{t}-{p}" for t, p in tps]))

    def _load_partition(self, tp: TP) -> int | None:
        """Load ``tp``'s checkpoint into the engine; its offset, or None (no usable state)."""
        if self.ckpt is None:
            return None
        try:
            state = self.ckpt.load_partition(tp)
            if state is None:
                return None
            engine = self.engine
            channels = list(state.get("channels") or [])
            has_keys = state.get("keys") is not None and bool(state["keys"]["windows"]["keys"])
            held = state.get("held")  # None in format 1 files (and without a reorder gate)
            if has_keys or (held and held["key"]):
                if engine.channels is not None and list(engine.channels) != channels:
                    raise CheckpointError(
                        f"channels {channels} differ from the engine's {engine.channels}")
                engine.decoder.channels = channels
            if has_keys:
                if engine.store is None:
                    engine._build(len(channels))
                checkpoint.load_keys_state(engine, state["keys"])
            self._held[tp] = checkpoint.load_held_state(engine, held)
        except (CheckpointError, KeyError, ValueError) as exc:
            log.error("partition checkpoint unusable; starting from the committed offset",
                      extra=_fields(topic=tp[0], partition=tp[1], error=str(exc)))
            self.metrics.checkpoint(0.0, time.time(), False)
            return None
        offset = int(state["offset"])
        self.engine.offsets[tp] = offset
        self._saved[tp] = offset
        return offset

    def _drop(self, tps: list[TP]) -> None:
        """Forget the keys, offsets and bookkeeping of ``tps`` (no longer ours)."""
        engine, gone = self.engine, set(tps)
        keys = [k for k, tp in engine.key_partition.items() if tp in gone]
        if engine.store is not None:
            engine.store.remove(keys)
        for k in keys:
            engine.alerter.forget(k, 0)  # the new owner continues the alert from its state
            engine.key_partition.pop(k, None)
        if engine.gate is not None:
            engine.gate.remove(tps)  # held records belong to the partition's next owner
        for tp in tps:
            engine.offsets.pop(tp, None)
            self._saved.pop(tp, None)
            self._committed.pop(tp, None)
            self._first_seen.pop(tp, None)
            self._held.pop(tp, None)
            self.owned.discard(tp)
        self.stats.alerts_firing = engine.alerter.n_open

    def _discard_pending(self) -> None:
        for s in self.engine.sinks.all():
            discard = getattr(s, "discard", None)
            if discard is not None:
                discard()

    def _rewind(self) -> None:
        """After a sink failure: reload every owned partition from its checkpoint and seek."""
        assert self.source is not None
        tps = sorted(self.owned)
        log.warning("rewinding to the last checkpoint", extra=_fields(
            partitions=[f"{t}-{p}" for t, p in tps]))
        self.stats.rewinds += 1
        self._discard_pending()
        self._drop(tps)
        if self.ckpt is not None:
            state = self.ckpt.load_model()
            if state is not None:
                checkpoint.load_model_state(self.engine, state)
                self._model_saved_at = self.engine.records_total
        for tp in tps:
            self.owned.add(tp)
            offset = self._load_partition(tp)
            try:
                if offset is not None:
                    self.source.seek(tp, offset + 1)
                else:
                    self.source.seek_committed(tp)
            except Exception as exc:  # noqa: BLE001 - broker away: retried by the next failure
                self._problem("rewind", repr(exc))

    # -- stop -----------------------------------------------------------------------------
    def _shutdown(self) -> bool:
        """Final checkpoint, then leave the group. True if the checkpoint succeeded."""
        ok = True
        try:
            self._checkpoint(sorted(self.owned))
        except SinkError:
            ok = False  # state not written: a restart resumes from the previous checkpoint
        if self.source is not None:
            self.source.close()  # revocation callbacks find nothing new to write
        if self.producer is not None:
            try:
                self.producer.close(timeout=10)
            except Exception as exc:  # noqa: BLE001
                log.warning("producer close failed", extra=_fields(error=repr(exc)))
            self.producer = None
        s = self.stats
        log.info("stopped", extra=_fields(records=s.records, dead_letters=s.dead_letters,
                                          anomalies=s.anomalies, checkpoints=s.checkpoints,
                                          clean=ok))
        return ok

    def _teardown(self) -> None:
        if self.source is not None:
            self.source.close()
        if self.producer is not None:
            try:
                self.producer.close(timeout=1)
            except Exception:  # noqa: BLE001 - best effort on the error path
                pass
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()
