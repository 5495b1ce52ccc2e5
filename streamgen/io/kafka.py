"""Kafka source and sinks, the only Kafka-aware code the service uses.

* :class:`KafkaSource` implements the :class:`~streamgen.core.ports.Source` protocol on a
  consumer-group member with manual commits. Partition assignment changes reach a
  :class:`PartitionListener` (the service), which saves state on revocation and loads it (and
  seeks) on assignment.
* :class:`KafkaSink` implements :class:`~streamgen.core.ports.Sink` on a shared idempotent
  producer (``acks='all'``): rows are JSON values keyed by the record key; ``flush()`` waits
  for every send since the last flush and raises :class:`~streamgen.errors.SinkError` if any
  failed, so that a checkpoint never moves past rows that are not on the broker. The producer
  is kafka-python's or confluent-kafka's (librdkafka), behind one interface
  (:mod:`streamgen.io.producers`, ``kafka.producer``); the consumer is always kafka-python.
* Consumer lag comes from the high watermark of fetch responses (``consumer.highwater``),
  which is right on every broker; ``end_offsets()`` is wrong on Tansu and costs a request.
* ``kafka.security`` is passed to both clients. A string value ``env:NAME`` is read from the
  environment variable ``NAME`` and ``file:/path`` from that file, here at the edge; values are
  never logged (:func:`describe_security` shows only the keys).

kafka-python 3 runs its network I/O on a background thread; rebalance callbacks run on it
while the caller's thread is blocked inside :meth:`KafkaConsumer.poll` (or ``close``), so the
listener may touch engine state without a lock, but must not call blocking consumer methods:
it may seek and commit asynchronously only (see :meth:`KafkaSource.commit`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamgen.config import KafkaConfig
from streamgen.core.jsonsafe import json_safe
from streamgen.core.ports import Metrics, RawMessage
from streamgen.errors import ConfigError, SinkError, SourceError
from streamgen.io.producers import OutputProducer, Tracker, as_output_producer, make_producer
from streamgen.io.secrets import resolve_secrets
from streamgen.records import Position

__all__ = [
    "KafkaSink",
    "KafkaSource",
    "PartitionListener",
    "TP",
    "describe_security",
    "make_producer",
    "make_reader",
    "resolve_security",
    "topic_partitions",
]

log = logging.getLogger("streamgen.kafka")

TP = tuple[str, int]
"""A topic partition as the core sees it: ``(topic, partition)``."""

# Option names kafka-python accepts for transport security and authentication, on consumers
# and producers alike; anything else under ``kafka.security`` is a config error.
_SECURITY_PREFIXES = ("security_", "ssl_", "sasl_")


def _security_keys() -> set[str]:
    both = set(KafkaConsumer.DEFAULT_CONFIG) & set(KafkaProducer.DEFAULT_CONFIG)
    # ssl_context and sasl_oauth_token_provider take Python objects, not YAML values.
    return {
        k for k in both
        if k.startswith(_SECURITY_PREFIXES) and k not in ("ssl_context", "sasl_oauth_token_provider")
    }


def resolve_security(security: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python options from ``kafka.security``, with ``env:``/``file:`` values resolved.

    Raises
    ------
    ConfigError
        On an unknown option, an unset variable or an unreadable file; the message names the
        field and never contains a secret.

    Examples
    --------
    >>> import os
    >>> os.environ["SG_DOCTEST_PW"] = "s3cret"
    >>> resolve_security({"sasl_plain_password": "env:SG_DOCTEST_PW"})["sasl_plain_password"]
    's3cret'
    >>> del os.environ["SG_DOCTEST_PW"]
    >>> resolve_security({"ssl_bogus": 1})
    Traceback (most recent call last):
    streamgen.errors.ConfigError: kafka.security.ssl_bogus: unknown kafka-python security option
    """
    return resolve_secrets(security, "kafka.security", _security_keys(),
                           "unknown kafka-python security option")


def describe_security(security: Mapping[str, Any]) -> dict[str, str]:
    """What may be logged about ``kafka.security``: the keys, and how each value is given."""
    out = {}
    for key, value in security.items():
        if isinstance(value, str) and value.startswith(("env:", "file:")):
            out[key] = value.split(":", 1)[0] + ":…"
        else:
            out[key] = "<set>"
    return out


def _split_options(options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Raw kafka-python options → (consumer options, producer options) by name."""
    cons, prod = {}, {}
    for key, value in (options or {}).items():
        known = False
        if key in KafkaConsumer.DEFAULT_CONFIG:
            cons[key] = value
            known = True
        if key in KafkaProducer.DEFAULT_CONFIG:
            prod[key] = value
            known = True
        if not known:
            raise ConfigError(f"--kafka-option {key}: not a kafka-python client option")
    return cons, prod


def _common(cfg: KafkaConfig) -> dict[str, Any]:
    return {
        "bootstrap_servers": [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()],
        "client_id": cfg.client_id,
        "reconnect_backoff_max_ms": int(cfg.reconnect_backoff_max_seconds * 1000),
        **resolve_security(cfg.security),
    }


def make_reader(cfg: KafkaConfig, *, bootstrap_timeout_ms: int = 10_000) -> KafkaConsumer:
    """A consumer outside any group (no group id, no commits) that assigns itself partitions
    (:func:`topic_partitions`) and seeks, as ``streamgen record`` reads a whole topic.

    Raises SourceError if no broker answers within ``bootstrap_timeout_ms``.
    """
    conf = {**_common(cfg), "group_id": None, "enable_auto_commit": False,
            "bootstrap_timeout_ms": bootstrap_timeout_ms}
    try:
        return KafkaConsumer(**conf)
    except KafkaError as exc:
        raise SourceError(f"cannot connect to {cfg.bootstrap_servers}: {exc!r}") from exc


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` in partition order (empty if the broker has no such topic)."""
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


# -- sinks --------------------------------------------------------------------------------------


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

try:  # optional (the `fast` extra): a score row in ~0.3-2 µs instead of ~5-9 µs
    import orjson as _orjson

    _ORJSON_OPTIONS = (_orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME
                       | _orjson.OPT_PASSTHROUGH_SUBCLASS)
except ImportError:  # pragma: no cover - depends on the installation
    _orjson = None


def encode_json(row: Mapping[str, Any]) -> bytes:
    """:func:`encode_row` by the standard library alone (the reference for its bytes)."""
    try:
        text = _JSON(row)
    except (ValueError, TypeError):
        text = json.dumps(json_safe(dict(row)), separators=(",", ":"), allow_nan=False, default=str)
    return text.encode("utf-8")


def encode_row(row: Mapping[str, Any]) -> bytes:
    """A row as compact, strict JSON bytes (non-finite numbers become null).

    With orjson installed its output is used where it is byte for byte what
    :func:`encode_json` writes: ASCII without DEL, and no float below 1e-4 (json writes
    ``1e-05`` where orjson writes ``0.00001``, ``1e-07`` where it writes ``1e-7``). Anything
    else (numpy values, non-string keys, integers beyond 64 bits, datetimes, subclasses of
    builtins, non-ASCII text) goes through :func:`encode_json`. A plain ``enum.Enum`` member,
    which no row carries, is the one value the two would write differently.

    >>> encode_row({"key": "a", "score": float("nan"), "n": 1})
    b'{"key":"a","score":null,"n":1}'
    """
    if _orjson is not None:
        try:
            out = _orjson.dumps(row, option=_ORJSON_OPTIONS)
        except TypeError:
            pass
        else:
            if (out.isascii() and b"e-" not in out and b"0.0000" not in out
                    and b"\x7f" not in out):
                return out
    return encode_json(row)


class KafkaSink:
    """Rows → JSON messages on ``topic`` through a (shared) idempotent producer.

    Parameters
    ----------
    producer
        An :class:`~streamgen.io.producers.OutputProducer` from :func:`make_producer` (a
        kafka-python ``KafkaProducer`` is wrapped); owned by the caller (several sinks share
        one, ``close`` leaves it open).
    topic
        Output topic.
    name
        Sink name for metrics (``scores``, ``alerts``, ...).
    flush_timeout_s
        Upper bound on one :meth:`flush`; by default the producer's delivery timeout plus a
        margin, after which every send has either succeeded or failed.
    on_stall
        Called about once a second while a flush waits (the service reports itself unhealthy).
    """

    def __init__(
        self,
        producer: OutputProducer | Any,
        topic: str,
        *,
        name: str = "kafka",
        flush_timeout_s: float | None = None,
        on_stall: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.producer = as_output_producer(producer)
        self.topic = topic
        self.name = name
        delivery_s = self.producer.delivery_timeout_s
        self.flush_timeout_s = flush_timeout_s if flush_timeout_s is not None else delivery_s + 5
        self.on_stall = on_stall
        self.metrics = metrics or Metrics()
        self._batch = Tracker()
        self.sent = 0

    def add(self, row: Mapping[str, Any]) -> None:
        """Queue ``row``; SinkError if the producer refuses it at once."""
        key = row.get("key")
        key_bytes = None if key is None else str(key).encode("utf-8")
        self.producer.send(self.topic, encode_row(row), key_bytes, tracker=self._batch)

    def pending(self) -> int:
        """Rows added since the last flush (or discard)."""
        return self._batch.sent

    def flush(self) -> None:
        """Wait until every row added since the last flush is acknowledged, or raise SinkError."""
        batch, self._batch = self._batch, Tracker()
        if not batch.sent:
            return
        deadline = time.monotonic() + self.flush_timeout_s
        while True:
            idle = self.producer.flush(1.0)
            if idle and batch.outstanding() <= 0:
                break
            if not idle and self.on_stall is not None:
                self.on_stall()
            if time.monotonic() > deadline:
                raise SinkError(
                    f"{self.topic}: {batch.outstanding()} of {batch.sent} rows not acknowledged "
                    f"within {self.flush_timeout_s:.0f} s"
                )
            if idle:
                time.sleep(0.001)  # the last delivery callbacks are still running
        if batch.failed:
            raise SinkError(f"{self.topic}: {len(batch.failed)} of {batch.sent} rows failed: "
                            f"{batch.failed[0]!r}")
        if batch.unconfirmed:
            # A retried send that the broker answered "duplicate" without the original offset.
            # Kafka does so only for old duplicates; Tansu (S3 storage) does so after a restart
            # for records it lost. Re-emitting from the last checkpoint keeps at-least-once.
            raise SinkError(f"{self.topic}: {len(batch.unconfirmed)} of {batch.sent} rows "
                            "acknowledged without an offset (duplicate-sequence answer); "
                            "not trusted")
        self.sent += batch.sent
        self.metrics.records_out(batch.sent, f"kafka_{self.name}")

    def discard(self) -> None:
        """Forget pending rows (after a failure, before a rewind to the last checkpoint); their
        late delivery reports go to a tracker nobody reads."""
        self._batch = Tracker()

    def close(self) -> None:
        pass


# -- source -------------------------------------------------------------------------------------


class PartitionListener(Protocol):
    """Receives assignment changes; called on the consumer's I/O thread inside ``poll``."""

    def on_assigned(self, partitions: list[TP]) -> None: ...

    def on_revoked(self, partitions: list[TP]) -> None: ...

    def on_lost(self, partitions: list[TP]) -> None: ...


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource, target: PartitionListener | None) -> None:
        self.source = source
        self.target = target

    @staticmethod
    def _tps(parts: Iterable[TopicPartition]) -> list[TP]:
        return sorted((tp.topic, tp.partition) for tp in parts)

    def on_partitions_revoked(self, revoked):  # noqa: ANN001 - kafka-python's signature
        self.source._rebalanced(self._tps(revoked))
        if self.target is not None:
            self.target.on_revoked(self._tps(revoked))

    def on_partitions_assigned(self, assigned):  # noqa: ANN001
        self.source._rebalanced([])
        if self.target is not None:
            self.target.on_assigned(self._tps(assigned))

    def on_partitions_lost(self, lost):  # noqa: ANN001
        self.source._rebalanced(self._tps(lost))
        if self.target is not None:
            self.target.on_lost(self._tps(lost))


class KafkaSource:
    """A consumer-group member delivering :class:`RawMessage` micro-batches.

    Auto-commit is off: the service commits ``offset + 1`` of the last record folded into a
    checkpoint. Group settings come from ``cfg``; ``options`` are raw kafka-python options
    (e.g. ``session_timeout_ms``), of which those a consumer knows are used.

    Raises
    ------
    ConfigError
        If neither ``kafka.topics`` nor ``kafka.pattern`` is set.
    SourceError
        If no broker answers within the bootstrap timeout.
    """

    name = "kafka"

    def __init__(
        self,
        cfg: KafkaConfig,
        listener: PartitionListener | None = None,
        *,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not cfg.topics and not cfg.pattern:
            raise ConfigError("kafka.topics: set the input topics (or kafka.pattern)")
        extra, _ = _split_options(options)
        conf: dict[str, Any] = {
            **_common(cfg),
            "group_id": cfg.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": cfg.auto_offset_reset,
            "bootstrap_timeout_ms": 5_000,
            **extra,
        }
        self.cfg = cfg
        try:
            self.consumer = KafkaConsumer(**conf)
        except KafkaError as exc:
            raise SourceError(f"cannot connect to {cfg.bootstrap_servers}: {exc!r}") from exc
        self.last_polled: dict[TP, int] = {}  # last offset handed out, per partition
        self.generation = 0  # bumped by every rebalance callback
        rebalance = _Rebalance(self, listener)
        try:
            if cfg.topics:
                self.consumer.subscribe(topics=list(cfg.topics), listener=rebalance)
            else:
                self.consumer.subscribe(pattern=cfg.pattern, listener=rebalance)
        except Exception:
            self.consumer.close(autocommit=False)
            raise
        self._closed = False

    # -- Source protocol ------------------------------------------------------------------
    def poll(self, max_records: int, timeout_ms: int) -> list[RawMessage]:
        """Up to ``max_records`` messages; returns when full or after ``timeout_ms``.

        Raises
        ------
        kafka.errors.KafkaError
            From the consumer (a failed rebalance callback, a fatal fetch error).
        """
        out: list[RawMessage] = []
        deadline = time.monotonic() + timeout_ms / 1000.0
        while len(out) < max_records:
            remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            generation = self.generation
            try:
                batch = self.consumer.poll(timeout_ms=remaining_ms,
                                           max_records=max_records - len(out))
            except Exception:
                if out and self.generation == generation:
                    # Positions already moved past these records: hand them out now; the
                    # error comes back on the next poll if it persists.
                    log.warning("poll failed; returning the records already fetched",
                                exc_info=True)
                    return out
                raise
            if self.generation != generation and out:
                # A rebalance ran inside this poll (before its fetch): records held from earlier
                # polls are not in the state the listener just saved, and positions were reset
                # (to the checkpoint or the commit), so they will be fetched again. Drop them.
                out.clear()
            for tp, records in batch.items():
                for r in records:
                    out.append(RawMessage(
                        value=r.value if r.value is not None else b"",
                        position=Position(tp.topic, tp.partition, r.offset),
                        key=r.key,
                        timestamp_ms=r.timestamp if r.timestamp is not None and r.timestamp >= 0
                        else None,
                    ))
                if records:
                    self.last_polled[(tp.topic, tp.partition)] = records[-1].offset
            if remaining_ms <= 0:
                break
        return out

    def exhausted(self) -> bool:
        return False

    def close(self) -> None:
        """Leave the group (revocation callbacks run first) and close the connections."""
        if self._closed:
            return
        self._closed = True
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # noqa: BLE001 - closing during an outage must not raise
            log.warning("consumer close failed", extra={"fields": {"error": repr(exc)}})

    # -- positions and commits ------------------------------------------------------------
    def seek(self, tp: TP, offset: int) -> None:
        """Next record of ``tp`` to fetch is ``offset`` (safe inside a rebalance callback)."""
        self.consumer.seek(TopicPartition(*tp), int(offset))
        self.last_polled[tp] = int(offset) - 1

    def seek_committed(self, tp: TP) -> None:
        """Rewind ``tp`` to its committed offset, else to ``auto_offset_reset`` (blocking)."""
        part = TopicPartition(*tp)
        committed = self.consumer.committed(part)
        if committed is not None:
            self.seek(tp, committed)
        elif self.cfg.auto_offset_reset == "earliest":
            self.consumer.seek_to_beginning(part)
            self.last_polled.pop(tp, None)
        else:
            self.consumer.seek_to_end(part)
            self.last_polled.pop(tp, None)

    def commit(self, next_offsets: Mapping[TP, int], *, blocking: bool = True,
               timeout_ms: int = 10_000) -> None:
        """Commit ``next_offsets`` (offset of the next record to read, i.e. last + 1).

        ``blocking=False`` sends the commit and returns at once (the only form allowed inside
        a rebalance callback); its outcome is only logged.

        Raises
        ------
        SourceError
            If a blocking commit fails.
        """
        if not next_offsets:
            return
        offsets = {
            TopicPartition(t, p): OffsetAndMetadata(int(o), "", -1)
            for (t, p), o in next_offsets.items()
        }
        if not blocking:
            def done(_offsets: Any, response: Any) -> None:
                if isinstance(response, BaseException):
                    log.info("asynchronous commit failed",
                             extra={"fields": {"error": repr(response)}})

            self.consumer.commit_async(offsets, callback=done)
            return
        try:
            self.consumer.commit(offsets, timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise SourceError(f"offset commit failed: {exc!r}") from exc

    def _rebalanced(self, gone: list[TP]) -> None:
        self.generation += 1
        for tp in gone:
            self.last_polled.pop(tp, None)

    # -- observation ----------------------------------------------------------------------
    def highwaters(self) -> dict[TP, int]:
        """The high watermark of each assigned partition, where known (from fetches)."""
        out: dict[TP, int] = {}
        for tp in self.consumer.assignment():
            try:
                high = self.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - revoked between the two calls
                continue
            if high is not None:
                out[(tp.topic, tp.partition)] = high
        return out

    def beyond_end(self, highs: Mapping[TP, int]) -> dict[TP, tuple[int, int]]:
        """Partitions whose next position lies past their high watermark ``highs`` (from
        :meth:`highwaters`; the topic was deleted and created again, or truncated):
        ``tp -> (position, high)``."""
        out: dict[TP, tuple[int, int]] = {}
        for tp, high in highs.items():
            last = self.last_polled.get(tp)
            if last is not None and last + 1 > high:
                out[tp] = (last + 1, high)
        return out

    def seek_to_beginning(self, tp: TP) -> None:
        """Next record of ``tp`` to fetch is its first one still in the log."""
        self.consumer.seek_to_beginning(TopicPartition(*tp))
        self.last_polled.pop(tp, None)

    def lags(self, highs: Mapping[TP, int] | None = None) -> dict[TP, int]:
        """High watermark minus next position for assigned partitions with a known watermark
        (``highs``: the watermarks already read by :meth:`highwaters`)."""
        out: dict[TP, int] = {}
        for key, high in (self.highwaters() if highs is None else highs).items():
            last = self.last_polled.get(key)
            if last is not None:
                out[key] = max(0, high - (last + 1))
            elif high == 0:
                out[key] = 0  # empty partition; otherwise unknown until the first fetch
        return out

    def connected(self) -> bool:
        """Whether the consumer holds at least one live broker connection."""
        try:
            metrics = self.consumer.metrics()
        except Exception:  # noqa: BLE001 - metrics disabled or closing
            return True
        counts = [v.get("connection-count") for v in metrics.values() if isinstance(v, dict)]
        counts = [c for c in counts if c is not None]
        return not counts or max(counts) > 0
