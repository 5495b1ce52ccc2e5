"""Both output producers (kafka-python, confluent-kafka) against the real test broker, and the
translation of kafka-python settings for librdkafka."""

from __future__ import annotations

import sys
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from streamgen.config import KafkaConfig
from streamgen.errors import ConfigError, SinkError
from streamgen.io.kafka import KafkaSink, encode_row
from streamgen.io.producers import confluent_config, make_producer, producer_kind
from streamgen.localbroker import LocalBroker
from tests.kafka.helpers import HAVE_CONFLUENT, PRODUCERS

pytestmark = pytest.mark.kafka



def _read(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list:
    """The first ``n`` messages of ``topic`` (kafka-python consumer, no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200, max_records=10_000).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("kind", PRODUCERS)
def test_sink_delivers_keyed_rows_that_kafka_python_reads(kafka_broker, kafka_topic, kind):
    topic = kafka_topic(3)
    producer = make_producer(KafkaConfig(bootstrap_servers=kafka_broker.bootstrap,
                                         producer=kind))
    assert producer.kind == kind
    rows = [{"key": f"sensor-{i % 7}", "i": i, "score": float("nan") if i == 3 else i / 10}
            for i in range(300)]
    sink = KafkaSink(producer, topic, name="scores")
    try:
        for row in rows[:150]:
            sink.add(row)
        assert sink.pending() == 150
        sink.flush()
        for row in rows[150:]:
            sink.add(row)
        sink.flush()
        sink.flush()  # nothing pending: a no-op
    finally:
        producer.close(timeout=10)
    assert sink.sent == 300 and sink.pending() == 0

    got = _read(kafka_broker.bootstrap, topic, 300)
    assert len(got) == 300
    by_i = {}
    for r in got:
        assert r.key == r.value.split(b'"key":"')[1].split(b'"')[0]
        by_i[int(r.value.split(b'"i":')[1].split(b",")[0])] = r
    assert sorted(by_i) == list(range(300))
    assert by_i[3].value == encode_row(rows[3])  # NaN -> null, same bytes as encode_row
    # Keyed like the Java client (murmur2), whichever producer wrote the row.
    for r in got:
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3
    # Per key, rows are in the order they were added (idempotent, ordered in flight).
    for k in {r.key for r in got}:
        seq = [int(r.value.split(b'"i":')[1].split(b",")[0])
               for r in sorted(got, key=lambda r: r.offset) if r.key == k]
        assert seq == sorted(seq)


@pytest.mark.parametrize("kind", PRODUCERS)
def test_an_oversized_row_fails_the_sink(kafka_broker, kafka_topic, kind):
    """A row over the producer's request limit: a SinkError at add or at flush, never lost
    silently; the rows around it are unaffected once the sink is discarded and retried."""
    topic = kafka_topic(1)
    producer = make_producer(KafkaConfig(bootstrap_servers=kafka_broker.bootstrap,
                                         producer=kind), {"max_request_size": 100_000})
    sink = KafkaSink(producer, topic)
    try:
        sink.add({"key": "a", "i": 0})
        with pytest.raises(SinkError):
            sink.add({"key": "a", "blob": "x" * 200_000})
            sink.flush()
        sink.discard()
        sink.add({"key": "a", "i": 1})
        sink.flush()
    finally:
        producer.close(timeout=10)
    assert len(_read(kafka_broker.bootstrap, topic, 2, timeout_s=10)) >= 1


@pytest.mark.parametrize("kind", PRODUCERS)
def test_broker_gone_fails_the_flush(kind):
    """Rows that cannot be delivered (the broker stopped) fail the flush with SinkError once
    the delivery timeout is over; the stall callback reported the wait."""
    broker = LocalBroker().start()
    try:
        broker.create_topic("gone", 1)
        producer = make_producer(
            KafkaConfig(bootstrap_servers=broker.bootstrap, producer=kind,
                        reconnect_backoff_max_seconds=0.5),
            {"delivery_timeout_ms": 2500, "request_timeout_ms": 1000, "linger_ms": 0},
        )
        stalls: list[int] = []
        sink = KafkaSink(producer, "gone", on_stall=lambda: stalls.append(1))
        try:
            sink.add({"key": "a", "i": 0})
            sink.flush()  # the topic works
            broker.kill()
            for i in range(20):
                sink.add({"key": "a", "i": i})
            t0 = time.monotonic()
            with pytest.raises(SinkError, match=r"20 rows|rows not acknowledged"):
                sink.flush()
            assert time.monotonic() - t0 < sink.flush_timeout_s + 2
            assert stalls
        finally:
            producer.close(timeout=1)
    finally:
        broker.close()


@pytest.mark.skipif(not HAVE_CONFLUENT, reason="confluent-kafka not installed")
def test_auto_prefers_confluent_and_reports_it(kafka_broker, caplog):
    with caplog.at_level("INFO", logger="streamgen.kafka"):
        producer = make_producer(KafkaConfig(bootstrap_servers=kafka_broker.bootstrap))
    try:
        assert producer.kind == "confluent"
    finally:
        producer.close(timeout=5)
    assert any(getattr(r, "fields", {}).get("producer") == "confluent" for r in caplog.records)


def test_confluent_requested_but_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails
    assert producer_kind("auto") == "kafka-python"
    with pytest.raises(ConfigError, match="kafka.producer: confluent needs confluent-kafka"):
        producer_kind("confluent")


def test_security_translated_for_librdkafka(monkeypatch):
    monkeypatch.setenv("SG_TEST_PW", "pw")
    conf = confluent_config(KafkaConfig(
        bootstrap_servers="a:9092, b:9092",
        security={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "u", "sasl_plain_password": "env:SG_TEST_PW",
                  "ssl_cafile": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem",
                  "ssl_password": "kp", "ssl_check_hostname": False}))
    assert conf["bootstrap.servers"] == "a:9092,b:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "pw")
    assert conf["ssl.ca.location"] == "/ca.pem"
    assert (conf["ssl.certificate.location"], conf["ssl.key.location"]) == ("/c.pem", "/k.pem")
    assert conf["ssl.key.password"] == "kp"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert (conf["acks"], conf["enable.idempotence"]) == ("all", True)


@pytest.mark.parametrize("sec, options, field", [
    ({"sasl_kerberos_domain_name": "x"}, {}, "kafka.security.sasl_kerberos_domain_name"),
    ({}, {"transactional_id": "t"}, "--kafka-option transactional_id"),
    ({}, {"no_such_option": 1}, "--kafka-option no_such_option"),
])
def test_untranslatable_settings_are_config_errors(sec, options, field):
    with pytest.raises(ConfigError, match=field):
        confluent_config(KafkaConfig(security=sec), options)


def test_consumer_options_do_not_reach_librdkafka():
    conf = confluent_config(KafkaConfig(), {"session_timeout_ms": 6000, "linger_ms": 50,
                                            "fetch_max_wait_ms": 10})
    assert conf["linger.ms"] == 50
    assert not any("session" in k or "fetch" in k for k in conf)


class _Msg:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class _Err:
    def __init__(self, name: str, fatal: bool = False) -> None:
        self._name, self._fatal = name, fatal

    def fatal(self) -> bool:
        return self._fatal

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._name


class _FakeRdkafka:
    """librdkafka's Producer as ConfluentProducer uses it: reports served by poll/flush."""

    def __init__(self, full: int = 0) -> None:
        self.full = full  # produce() calls that raise BufferError first
        self.queued: list = []
        self.polls = 0
        self.purged = self.closed = False
        self.offset = 0
        self.error = None  # what queued messages fail with when served (None: delivered)

    def produce(self, topic, value, key, on_delivery=None, **kw):
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.queued.append(on_delivery)

    def _serve(self, err=None):
        err = err or self.error
        queued, self.queued = self.queued, []
        for cb in queued:
            if cb is not None:
                cb(err, _Msg(self.offset))
                self.offset += 1

    def poll(self, timeout=0):
        self.polls += 1
        self._serve()
        return 0

    def flush(self, timeout=0):
        self._serve()
        return 0

    def purge(self):
        self.purged = True
        self._serve(_Err("_PURGE_QUEUE"))

    def close(self):
        self.closed = True


def _confluent_with(monkeypatch, *clients):
    from streamgen.io.producers import ConfluentProducer

    pool = list(clients)
    monkeypatch.setattr(ConfluentProducer, "_new", lambda self, timeout: pool.pop(0))
    return ConfluentProducer({"bootstrap.servers": "x:1", "delivery.timeout.ms": 2000})


@pytest.mark.skipif(not HAVE_CONFLUENT, reason="confluent-kafka not installed")
def test_a_full_queue_waits_for_room(monkeypatch):
    client = _FakeRdkafka(full=3)
    producer = _confluent_with(monkeypatch, client)
    sink = KafkaSink(producer, "t")
    sink.add({"key": "a"})
    assert client.polls == 3  # served delivery reports until produce() found room
    sink.flush()
    assert sink.sent == 1


@pytest.mark.skipif(not HAVE_CONFLUENT, reason="confluent-kafka not installed")
def test_a_fatal_error_fails_the_flush_and_the_next_send_uses_a_new_client(monkeypatch):
    old, new = _FakeRdkafka(), _FakeRdkafka()
    producer = _confluent_with(monkeypatch, old, new)
    sink = KafkaSink(producer, "t")
    sink.add({"key": "a"})
    old.error = _Err("_FATAL", fatal=True)  # librdkafka fails what it holds
    producer._on_error(old.error)
    with pytest.raises(SinkError, match="1 of 1 rows failed"):
        sink.flush()  # the fatal error purged what the old client held
    assert old.purged
    sink.add({"key": "b"})
    assert producer.client is new and new.queued
    sink.flush()
    assert sink.sent == 1
