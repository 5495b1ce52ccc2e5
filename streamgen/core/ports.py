"""Protocols the engine talks to: sources, sinks and metrics.

Adapters in :mod:`streamgen.io` implement them for Kafka, files and Prometheus. The core only
sees these protocols, so the same loop serves live consumers, replays and ``streamgen score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamgen.records import Position


@dataclass(frozen=True)
class Unreadable:
    """A message body a source could not even split into a record (a malformed CSV line, a
    truncated compressed file): the decoder dead-letters it with ``reason``, ``raw`` as the
    original bytes."""

    raw: bytes
    reason: str
    final: bool = False  # nothing after it could be read (a truncated file)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An undecoded message as a source delivers it.

    ``value`` is the message body (JSON bytes, or a CSV row already split into a mapping);
    ``key`` is the Kafka message key when there is one; ``timestamp_ms`` the broker timestamp.
    """

    value: bytes | Mapping[str, str] | Unreadable
    position: Position
    key: bytes | None = None
    timestamp_ms: int | None = None


@runtime_checkable
class Source(Protocol):
    """Delivers raw messages in order within each partition."""

    def poll(self, max_records: int, timeout_ms: int) -> list[RawMessage]:
        """Return up to ``max_records`` messages, waiting at most ``timeout_ms``."""
        ...

    def exhausted(self) -> bool:
        """True once a finite source (a file) has nothing more to give."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Receives output rows; ``flush`` makes everything added so far durable or raises."""

    def add(self, row: Mapping[str, object]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Metrics:
    """Instrumentation hooks. This base class does nothing (the default in tests and core).

    :class:`streamgen.io.metrics.PrometheusMetrics` overrides every method. Method names say
    what happened; arguments are already in base units (seconds, bytes). No method takes a
    record key: keys are unbounded and never become labels.
    """

    def records_in(self, n: int, source: str) -> None:
        """``n`` raw messages were read from ``source`` ("kafka", "file", "synthetic")."""

    def records_out(self, n: int, sink: str) -> None:
        """``n`` rows were written to ``sink`` ("scores", "continuations", "alerts", ...)."""

    def dead_lettered(self, n: int, reason: str) -> None:
        """``n`` records went to the dead-letter sink; ``reason`` is a short bounded code."""

    def batch(self, n_records: int, n_windows: int) -> None:
        """A micro-batch of ``n_records`` records produced ``n_windows`` scored windows."""

    def stage_latency(self, stage: str, seconds: float) -> None:
        """Time spent in one stage of a batch: decode, window, score, learn, emit, checkpoint."""

    def end_to_end_latency(self, seconds: Sequence[float]) -> None:
        """Per record: time from the record's source timestamp to its score being emitted."""

    def consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        """Messages between the consumer position and the high watermark of a partition."""

    def last_event_timestamp(self, ts_seconds: float) -> None:
        """Event time (epoch seconds) of the newest record folded into state."""

    def train_step(self, model: str, loss: float, kl: float | None, skipped: bool) -> None:
        """One optimizer step (or a skipped one: non-finite loss or exploding gradient)."""

    def rollback(self, model: str) -> None:
        """The model was rolled back to its last good weights after repeated bad steps."""

    def scores(self, model: str, calibrated: Sequence[float]) -> None:
        """Calibrated scores of the windows scored in a batch."""

    def anomalies(self, model: str, n: int) -> None:
        """``n`` windows were flagged anomalous."""

    def alert_event(self, state: str) -> None:
        """An alert changed state: "firing" or "resolved"."""

    def alerts_firing(self, n: int) -> None:
        """Number of alerts open right now."""

    def keys_tracked(self, n: int) -> None:
        """Number of keys with window state in memory."""

    def keys_evicted(self, n: int, reason: str) -> None:
        """``n`` keys were evicted ("capacity" or "idle")."""

    def checkpoint(self, seconds: float, ts_seconds: float, ok: bool) -> None:
        """A checkpoint took ``seconds``; ``ts_seconds`` is its wall time; ``ok`` False = failed."""

    def forecast_error(self, model: str, abs_error: float) -> None:
        """Mean absolute one-step forecast error (normalized units) over a batch."""

    def healthy(self, ok: bool) -> None:
        """Whether the process can reach its source and make progress."""

    def progress(self, ts_seconds: float) -> None:
        """Wall time (epoch seconds) at which committed offsets last moved forward."""

    def offset_reset(self, reason: str) -> None:
        """A partition's saved offset was outside its log (``beyond_end``) and it was reset."""
