"""Output producers: one small interface, two clients.

:func:`make_producer` is the one place producers are made (the service's sinks, ``streamgen
replay``, the demo's load generator). It returns an :class:`OutputProducer`:

* :class:`KafkaPythonProducer` on kafka-python's ``KafkaProducer`` (pure Python; about
  70-150 µs of the caller's CPU per message here);
* :class:`ConfluentProducer` on confluent-kafka (librdkafka: batching, retries and I/O run in
  C threads; about 2 µs of the caller's CPU per message).

``kafka.producer`` chooses: ``auto`` (confluent-kafka when it can be imported, else
kafka-python), ``kafka-python`` or ``confluent``. Both are configured alike: idempotent,
``acks=all``, keyed rows partitioned by the Java client's murmur2 hash (so a key lands on the
same partition whichever client wrote it), the same ``kafka.security`` (kafka-python's option
names, translated for librdkafka) and the same delivery timeout (120 s by default).

Delivery outcomes reach a :class:`Tracker` (one per sink and flush interval) through each
client's callback; :class:`~streamgen.io.kafka.KafkaSink` turns them into
:class:`~streamgen.errors.SinkError` at ``flush``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamgen.errors import ConfigError, SinkError, SourceError

if TYPE_CHECKING:
    from streamgen.config import KafkaConfig

__all__ = [
    "ConfluentProducer",
    "KafkaPythonProducer",
    "OutputProducer",
    "Tracker",
    "as_output_producer",
    "confluent_config",
    "make_producer",
]

log = logging.getLogger("streamgen.kafka")

# kafka-python's delivery_timeout_ms default; librdkafka's (300 s) is set to the same.
DEFAULT_DELIVERY_TIMEOUT_MS = 120_000


class Tracker:
    """Outcomes of the messages sent with it: ``sent`` by the caller, the rest by delivery
    callbacks (on a client thread for kafka-python: appends to lists are atomic)."""

    __slots__ = ("failed", "ok", "sent", "unconfirmed")

    def __init__(self) -> None:
        self.sent = 0
        self.ok: list[None] = []
        self.failed: list[Any] = []  # the errors, first first
        self.unconfirmed: list[int] = []  # acknowledged without an offset

    def outstanding(self) -> int:
        return self.sent - len(self.ok) - len(self.failed) - len(self.unconfirmed)

    def _offset(self, offset: int | None) -> None:
        if offset is None or offset < 0:
            self.unconfirmed.append(-1 if offset is None else offset)
        else:
            self.ok.append(None)

    # kafka-python: Future.add_both(callback) -> callback(metadata or exception)
    def future_done(self, value: Any) -> None:
        if isinstance(value, BaseException):
            self.failed.append(value)
        else:
            self._offset(getattr(value, "offset", 0))

    # librdkafka: on_delivery(err, msg), served by poll()/flush() on the caller's thread
    def report(self, err: Any, msg: Any) -> None:
        if err is None:
            offset = msg.offset()
            if offset is not None and offset >= 0:
                self.ok.append(None)
            else:
                self.unconfirmed.append(-1 if offset is None else offset)
        else:
            self.failed.append(err)


class OutputProducer(ABC):
    """What sinks, replay and the demo need from a producer."""

    kind: str
    delivery_timeout_s: float

    @abstractmethod
    def send(self, topic: str, value: bytes, key: bytes | None = None, *,
             partition: int | None = None, timestamp_ms: int | None = None,
             tracker: Tracker | None = None) -> None:
        """Queue one message; its outcome goes to ``tracker``.

        Raises
        ------
        SinkError
            If the client refuses the message at once (too large, producer closed).
        """

    @abstractmethod
    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every queued message; True if none is left."""

    @abstractmethod
    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout`` s), then release the client."""


class KafkaPythonProducer(OutputProducer):
    """:class:`OutputProducer` on a kafka-python ``KafkaProducer`` (or an object like it)."""

    kind = "kafka-python"

    def __init__(self, producer: Any) -> None:
        self.client = producer
        config = getattr(producer, "config", None) or {}
        self.delivery_timeout_s = float(
            config.get("delivery_timeout_ms", DEFAULT_DELIVERY_TIMEOUT_MS)) / 1000.0

    def send(self, topic: str, value: bytes, key: bytes | None = None, *,
             partition: int | None = None, timestamp_ms: int | None = None,
             tracker: Tracker | None = None) -> None:
        from kafka.errors import KafkaError

        try:
            if partition is None and timestamp_ms is None:
                fut = self.client.send(topic, key=key, value=value)
            else:
                fut = self.client.send(topic, key=key, value=value, partition=partition,
                                       timestamp_ms=timestamp_ms)
        except KafkaError as exc:
            raise SinkError(f"{topic}: cannot send: {exc!r}") from exc
        if tracker is not None:
            tracker.sent += 1
            fut.add_both(tracker.future_done)

    def flush(self, timeout: float) -> bool:
        from kafka.errors import KafkaTimeoutError

        try:
            self.client.flush(timeout=timeout)
        except KafkaTimeoutError:
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.client.close(timeout=timeout)


class ConfluentProducer(OutputProducer):
    """:class:`OutputProducer` on confluent-kafka's ``Producer`` (librdkafka).

    Delivery reports are served by ``poll`` on the caller's thread: every 1,000 sends, while
    the local queue is full, and in :meth:`flush`. A fatal error (idempotence state lost)
    fails what is queued; the next send replaces the client with a new one.
    """

    kind = "confluent"
    POLL_EVERY = 1000

    def __init__(self, conf: Mapping[str, Any], *, connect_timeout_s: float = 5.0) -> None:
        self.conf = dict(conf)
        self.delivery_timeout_s = float(
            self.conf.get("delivery.timeout.ms", DEFAULT_DELIVERY_TIMEOUT_MS)) / 1000.0
        self._fatal: Any = None
        self._unsent = 0
        self._last_error: dict[str, float] = {}
        from confluent_kafka import KafkaException

        self._KafkaException = KafkaException
        self.client = self._new(connect_timeout_s)

    def _new(self, connect_timeout_s: float) -> Any:
        from confluent_kafka import KafkaException, Producer

        conf = {**self.conf, "error_cb": self._on_error,
                "logger": logging.getLogger("streamgen.kafka.librdkafka")}
        try:
            client = Producer(conf)
        except KafkaException as exc:
            raise ConfigError(f"kafka: librdkafka refused the producer settings: {exc}") from None
        try:
            # librdkafka connects lazily; like kafka-python, fail here if no broker answers.
            client.list_topics(timeout=connect_timeout_s)
        except KafkaException as exc:
            client.purge()
            raise SourceError(
                f"cannot connect a producer to {self.conf.get('bootstrap.servers')}: {exc}"
            ) from exc
        return client

    def _on_error(self, err: Any) -> None:
        # Global errors (brokers down, fatal idempotence errors); delivery failures reach the
        # trackers. Logged at most every 10 s per kind.
        if err.fatal():
            self._fatal = err
        name = err.name()
        now = time.monotonic()
        if now - self._last_error.get(name, -1e9) >= 10.0 or err.fatal():
            self._last_error[name] = now
            log.warning("producer error", extra={"fields": {
                "error": err.str(), "code": name, "fatal": bool(err.fatal())}})

    def _replace(self) -> None:
        """After a fatal error: fail what the old client holds, start a new one."""
        old, err = self.client, self._fatal
        log.error("producer failed fatally; starting a new one",
                  extra={"fields": {"error": str(err)}})
        try:
            old.purge()
            old.flush(0)  # serves the failed deliveries' reports
        except Exception:  # noqa: BLE001 - best effort on a dead client
            pass
        self._fatal = None
        self.client = self._new(5.0)

    def send(self, topic: str, value: bytes, key: bytes | None = None, *,
             partition: int | None = None, timestamp_ms: int | None = None,
             tracker: Tracker | None = None) -> None:
        if self._fatal is not None:
            self._replace()
        cb = None if tracker is None else tracker.report
        try:
            if partition is None and timestamp_ms is None:
                self.client.produce(topic, value, key, on_delivery=cb)
            else:
                self._produce(topic, value, key, partition, timestamp_ms, cb)
        except BufferError:
            self._produce_when_room(topic, value, key, partition, timestamp_ms, cb)
        except self._KafkaException as exc:
            raise SinkError(f"{topic}: cannot send: {exc}") from exc
        if tracker is not None:
            tracker.sent += 1
        self._unsent += 1
        if self._unsent >= self.POLL_EVERY:
            self._unsent = 0
            self.client.poll(0)

    def _produce(self, topic: str, value: bytes, key: bytes | None, partition: int | None,
                 timestamp_ms: int | None, cb: Any) -> None:
        kw: dict[str, Any] = {"on_delivery": cb}
        if partition is not None:
            kw["partition"] = partition
        if timestamp_ms is not None:
            kw["timestamp"] = timestamp_ms
        self.client.produce(topic, value, key, **kw)

    def _produce_when_room(self, topic: str, value: bytes, key: bytes | None,
                           partition: int | None, timestamp_ms: int | None, cb: Any) -> None:
        """The local queue is full: serve delivery reports until there is room."""
        deadline = time.monotonic() + self.delivery_timeout_s
        while True:
            self.client.poll(0.05)
            try:
                self._produce(topic, value, key, partition, timestamp_ms, cb)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise SinkError(f"{topic}: producer queue full for "
                                    f"{self.delivery_timeout_s:.0f} s") from None
            except self._KafkaException as exc:
                raise SinkError(f"{topic}: cannot send: {exc}") from exc

    def flush(self, timeout: float) -> bool:
        self._unsent = 0
        left = self.client.flush(timeout)
        if self._fatal is not None:
            self.client.purge()
            left = self.client.flush(0)
        return left == 0

    def close(self, timeout: float = 10.0) -> None:
        client = self.client
        try:
            if client.flush(timeout) > 0:
                client.purge()
                client.flush(0)
        finally:
            client.close()


def as_output_producer(producer: Any) -> OutputProducer:
    """``producer`` itself, or a kafka-python ``KafkaProducer`` (or look-alike) wrapped."""
    if isinstance(producer, OutputProducer):
        return producer
    return KafkaPythonProducer(producer)


# -- configuration ------------------------------------------------------------------------------

# kafka.security (kafka-python names) -> librdkafka; a name missing here is a ConfigError when
# the confluent producer is used.
_SECURITY_TO_RDKAFKA: dict[str, str] = {
    "security_protocol": "security.protocol",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",  # True -> https, else none
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
}

# Raw kafka-python producer options (--kafka-option) -> librdkafka.
_OPTIONS_TO_RDKAFKA: dict[str, str] = {
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "compression_type": "compression.type",
    "delivery_timeout_ms": "delivery.timeout.ms",
    "request_timeout_ms": "request.timeout.ms",
    "retries": "retries",
    "retry_backoff_ms": "retry.backoff.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "max_request_size": "message.max.bytes",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "client_id": "client.id",
}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


def confluent_config(cfg: KafkaConfig, options: Mapping[str, Any] | None = None,
                     *, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings equal to :func:`make_producer`'s kafka-python ones.

    ``options`` are raw kafka-python options (producer and consumer ones mixed, as given to
    ``--kafka-option``); ``defaults`` are kafka-python producer options of the caller (replay's
    longer linger) that ``options`` override.

    Raises
    ------
    ConfigError
        For a ``kafka.security`` option, or a producer-only option, with no librdkafka
        equivalent.

    Examples
    --------
    >>> from streamgen.config import KafkaConfig
    >>> c = confluent_config(KafkaConfig(security={"sasl_plain_username": "u"}),
    ...                      {"linger_ms": 20, "session_timeout_ms": 6000})
    >>> c["linger.ms"], c["sasl.username"], c["enable.idempotence"], c["partitioner"]
    (20, 'u', True, 'murmur2_random')
    >>> confluent_config(KafkaConfig(security={"sasl_kerberos_domain_name": "x"}))
    Traceback (most recent call last):
    streamgen.errors.ConfigError: kafka.security.sasl_kerberos_domain_name: no librdkafka equivalent; use kafka.producer: kafka-python
    """
    from kafka import KafkaConsumer, KafkaProducer

    from streamgen.io.kafka import _split_options, resolve_security

    _split_options({**(defaults or {}), **(options or {})})  # unknown names: ConfigError
    servers = [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()]
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(servers),
        "client.id": cfg.client_id,
        "reconnect.backoff.max.ms": int(cfg.reconnect_backoff_max_seconds * 1000),
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": min(5, cfg.max_in_flight_requests),
        "linger.ms": 5,
        "batch.size": 256 * 1024,
        "delivery.timeout.ms": DEFAULT_DELIVERY_TIMEOUT_MS,
        # The Java client's (and kafka-python's) key hash: same key, same partition.
        "partitioner": "murmur2_random",
    }
    for key, value in resolve_security(cfg.security).items():
        name = _SECURITY_TO_RDKAFKA.get(key)
        if name is None:
            raise ConfigError(f"kafka.security.{key}: no librdkafka equivalent; "
                              "use kafka.producer: kafka-python")
        if key == "ssl_check_hostname":
            value = "https" if _truthy(value) else "none"
        conf[name] = value
    merged = {**(defaults or {}), **(options or {})}
    for key, value in merged.items():
        if key == "bootstrap_timeout_ms":
            continue  # the connect check's timeout (make_producer)
        name = _OPTIONS_TO_RDKAFKA.get(key)
        if name is not None:
            conf[name] = value
        elif key in KafkaProducer.DEFAULT_CONFIG and key not in KafkaConsumer.DEFAULT_CONFIG:
            raise ConfigError(f"--kafka-option {key}: no librdkafka equivalent; "
                              "use kafka.producer: kafka-python")
        # else: a consumer option (the consumer is always kafka-python)
    return conf


def producer_kind(requested: str) -> str:
    """``kafka-python`` or ``confluent`` for ``kafka.producer`` (``auto`` resolved).

    Raises
    ------
    ConfigError
        If ``confluent`` is asked for and confluent-kafka cannot be imported.
    """
    if requested == "kafka-python":
        return requested
    try:
        import confluent_kafka  # noqa: F401
    except ImportError as exc:
        if requested == "confluent":
            raise ConfigError("kafka.producer: confluent needs confluent-kafka "
                              f"(pip install 'streamgen[fast]'): {exc}") from None
        return "kafka-python"
    return "confluent"


def make_producer(cfg: KafkaConfig, options: Mapping[str, Any] | None = None, *,
                  defaults: Mapping[str, Any] | None = None,
                  quiet: bool = False) -> OutputProducer:
    """An idempotent producer (``acks=all``) of the kind ``cfg.producer`` chooses.

    ``options`` are raw kafka-python options (those a producer knows are used, translated for
    librdkafka); ``defaults`` are the caller's kafka-python producer options (``options``
    override them). Logs which client is used unless ``quiet``.

    Raises
    ------
    SourceError
        If no broker answers within the bootstrap timeout (5 s unless ``bootstrap_timeout_ms``).
    ConfigError
        On options the chosen client cannot take.
    """
    kind = producer_kind(cfg.producer)
    merged = {**(defaults or {}), **(options or {})}
    connect_ms = int(merged.get("bootstrap_timeout_ms", 5_000))
    if kind == "confluent":
        import confluent_kafka

        producer: OutputProducer = ConfluentProducer(
            confluent_config(cfg, options, defaults=defaults), connect_timeout_s=connect_ms / 1000)
        version = f"confluent-kafka {confluent_kafka.version()[0]}, " \
                  f"librdkafka {confluent_kafka.libversion()[0]}"
    else:
        import kafka

        producer = KafkaPythonProducer(_kafka_python_producer(cfg, options, defaults))
        version = f"kafka-python {kafka.__version__}"
    if not quiet:
        log.info("producer", extra={"fields": {"producer": kind, "requested": cfg.producer,
                                               "client": version}})
    return producer


def _kafka_python_producer(cfg: KafkaConfig, options: Mapping[str, Any] | None,
                           defaults: Mapping[str, Any] | None) -> Any:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from streamgen.io.kafka import _common, _split_options

    _, extra = _split_options({**(defaults or {}), **(options or {})})
    conf: dict[str, Any] = {
        **_common(cfg),
        "acks": "all",
        "enable_idempotence": True,
        # Idempotence keeps order with up to 5 in-flight requests per connection.
        "max_in_flight_requests_per_connection": min(5, cfg.max_in_flight_requests),
        # Score rows come in bursts of one micro-batch: a short linger fills big batches.
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "bootstrap_timeout_ms": 5_000,
        **extra,
    }
    try:
        return KafkaProducer(**conf)
    except KafkaError as exc:
        raise SourceError(f"cannot connect a producer to {cfg.bootstrap_servers}: {exc!r}") from exc
