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

import logging
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamgen.checkpointer import Checkpointer
from streamgen.checkpoints import PartitionCheckpoints
from streamgen.config import PipelineConfig
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import Metrics, RawMessage, Sink
from streamgen.core.runtime import freeze_heap
from streamgen.errors import ConfigError, SinkError, SourceError
from streamgen.health import Health
from streamgen.io.kafka import (
    TP,
    KafkaSink,
    KafkaSource,
    describe_security,
    make_producer,
)
from streamgen.jsonlog import JsonFormatter, setup_logging
from streamgen.jsonlog import fields as _fields

__all__ = ["JsonFormatter", "PartitionCheckpoints", "Service", "ServiceStats", "setup_logging"]

log = logging.getLogger("streamgen.service")


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
        ``metrics`` is Prometheus-backed; with ``metrics.status_page`` it also serves the live
        status page (``/``, ``/status.json``; :mod:`streamgen.io.status`).
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
        self.ckpt = (PartitionCheckpoints(cfg.checkpoint.dir, cfg.checkpoint)
                     if cfg.checkpoint.dir else None)
        self.stats = ServiceStats()
        self.source: KafkaSource | None = None
        self.producer: Any = None
        self.metrics_server: Any = None
        self.status: Any = None  # StatusCollector while the status page is served
        self.owned: set[TP] = set()
        self._first_seen: dict[TP, int] = {}  # partition -> first offset polled
        self.health = Health(self.metrics, cfg.health.stall_seconds, self._on_health)
        group = None
        if self.ckpt is not None and cfg.checkpoint.merge_models:
            from streamgen.merge import GroupModel, default_member_id

            group = GroupModel(self.ckpt.store, cfg.checkpoint.member_id or default_member_id(),
                               cfg.checkpoint.merge_forget_seconds)
        self.checkpointer = Checkpointer(self.engine, self.ckpt, self.metrics, self.health,
                                         self.stats, group, self._is_coordinator)
        self._stop = threading.Event()
        self._old_handlers: dict[int, Any] = {}
        self._signalled = 0
        self._aborted = False

    def _is_coordinator(self) -> bool:
        """Whether this member merges the group model: it owns partition 0 of the first
        input topic (Kafka gives a partition to one member at a time). With
        ``kafka.pattern``, the first topic this member holds: two members may then both
        merge, which costs work but stays consistent (streamgen/merge.py)."""
        if not self.owned:
            return False
        topics = sorted(self.cfg.kafka.topics) or [min(t for t, _ in self.owned)]
        return (topics[0], 0) in self.owned

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
    def _on_health(self, ok: bool) -> None:
        self.stats.healthy = ok

    def _problem(self, what: str, detail: str) -> None:
        self.health.problem(what, detail)

    def _resolved(self, what: str) -> None:
        self.health.resolved(what)

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
        self.checkpointer.load_model(self.init_from)

    def _start_metrics_server(self) -> None:
        from streamgen.io.metrics import MetricsServer, PrometheusMetrics

        m = self.cfg.metrics
        if not (self.serve_metrics and m.enabled and isinstance(self.metrics, PrometheusMetrics)):
            return
        status = None
        if m.status_page:
            from streamgen.io.status import StatusCollector

            self.status = StatusCollector(m.status_keys, m.status_history,
                                          info=self._status_info, name=self.cfg.name,
                                          model=self.cfg.model.name)
            status = self.status.snapshot
        server = MetricsServer.for_metrics(
            self.metrics, m.host, m.port,
            max_silence_seconds=max(120.0, 6 * self.cfg.checkpoint.interval_seconds),
            status=status,
        )
        try:
            server.start()
        except OSError as exc:
            self.status = None
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
                self.health.connected = True
                self.checkpointer.source = self.source
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
        page: tuple[Sink | None, ...] = (None, None, None)
        if self.status is not None:
            page = self.status.sinks()

        def sink(topic: str | None, name: str, *extra: Sink | None) -> Sink | None:
            main = None
            if topic:
                main = KafkaSink(self.producer, topic, name=name, metrics=self.metrics,
                                 on_stall=lambda: self._problem("flush", "producer stalled"))
            parts = [s for s in (main, *extra) if s is not None]
            return parts[0] if len(parts) == 1 else TeeSink(*parts) if parts else None

        return Sinks(
            scores=sink(k.scores_topic, "scores", tee.scores, page[0]),
            continuations=sink(k.continuations_topic, "continuations", tee.continuations,
                               page[1]),
            alerts=sink(k.alerts_topic, "alerts", tee.alerts, page[2]),
            dead_letters=sink(k.dead_letter_topic, "dead_letters", tee.dead_letters),
        )

    def _status_info(self) -> dict[str, Any]:
        """The live figures of the status page (called on the HTTP thread)."""
        s, health = self.stats, self.health
        server = self.metrics_server
        try:
            ready = bool(server.ready()) if server is not None else health.healthy
        except Exception:  # noqa: BLE001 - as /readyz: a failing check means "not ready"
            ready = False
        problems = dict(health.problems)
        reason = "; ".join(f"{k}: {v}" for k, v in problems.items())
        if not ready and not reason:
            reason = "not connected yet" if not health.connected else "not ready"
        return {
            "health": {"ready": ready, "problems": problems, "reason": reason},
            "records": s.records, "dead_letters": s.dead_letters, "anomalies": s.anomalies,
            "alerts_firing": s.alerts_firing, "lag": s.lag, "checkpoints": s.checkpoints,
            "partitions": [f"{t}-{p}" for t, p in s.assigned],
            "keys_in_state": self.engine.store.n_keys if self.engine.store is not None else 0,
            "step": self.engine.step,
        }

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
            if "poll" in self.health.problems:
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
        finally:
            if self.status is not None:
                self.status.batch(self.engine)
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
        s.alerts_firing = self.engine.alerts_open
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
        if self.status is not None:
            self.status.sample(self.stats.records, self.stats.lag)
        self.stats.assigned = sorted(self.owned)
        self.health.watch(highs, self.checkpointer.committed, self._first_seen)
        self._check_ranges(highs)
        self.health.report()

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

    def _checkpoint(self, tps: list[TP], *, blocking_commit: bool = True) -> bool:
        """Flush → write state → commit (:class:`~streamgen.checkpointer.Checkpointer`)."""
        return self.checkpointer.checkpoint(tps, blocking_commit=blocking_commit)

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
                                       held=self.checkpointer.held.get(tp, 0)))
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
        return self.checkpointer.load_partition(tp)

    def _drop(self, tps: list[TP]) -> None:
        """Forget the keys, held records, offsets and bookkeeping of ``tps`` (no longer
        ours)."""
        self.engine.drop_partitions(tps)
        self.checkpointer.forget(tps)
        for tp in tps:
            self._first_seen.pop(tp, None)
            self.owned.discard(tp)
        self.stats.alerts_firing = self.engine.alerts_open

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
        self.checkpointer.reload_model()
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
