"""Integration tests of the local test broker (Tansu) and its fixtures."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streamgen.errors import SourceError
from streamgen.localbroker import (
    ENV_TANSU_BIN,
    TEST_GROUP_CONFIG,
    LocalBroker,
    find_tansu_binary,
)
from tests.s3_server import ENV_WEED_BIN, find_weed_binary

KEYS = [f"sensor-{i}" for i in range(10)]


def _produce(bootstrap: str, topic: str, start: int, count: int) -> list[Any]:
    """Send records ``seq = start .. start+count-1`` keyed round-robin; return their metadata."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
    )
    try:
        futures = [
            producer.send(
                topic,
                key=KEYS[seq % len(KEYS)].encode(),
                value=json.dumps({"seq": seq}).encode(),
            )
            for seq in range(start, start + count)
        ]
        producer.flush(timeout=30)
        return [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=5)


def _group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **TEST_GROUP_CONFIG,
    )


def _consume_and_commit(
    consumer: KafkaConsumer, limit: int, timeout_s: float = 30.0
) -> list[Any]:
    """Consume up to ``limit`` records, committing exactly the processed ones after each poll."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < limit and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200, max_records=limit - len(got))
        offsets = {}
        for tp, records in batch.items():
            got.extend(records)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        if offsets:
            consumer.commit(offsets)
    return got


def _read_all_without_group(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    """Read every record of ``topic`` from the beginning with manual assignment (no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
        for records in consumer.poll(timeout_ms=300).values():  # nothing beyond `expected`
            got.extend(records)
        return got
    finally:
        consumer.close()


def _seqs(records: list) -> list[int]:
    return sorted(_seq(r) for r in records)


def _seq(record: Any) -> int:
    return int(json.loads(record.value)["seq"])


# --------------------------------------------------------------------------------------------
# no broker needed
# --------------------------------------------------------------------------------------------


def test_find_tansu_binary_default_and_bad_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TANSU_BIN, raising=False)
    assert find_tansu_binary().name == "tansu"
    monkeypatch.setenv(ENV_TANSU_BIN, "/nonexistent/tansu")
    with pytest.raises(SourceError, match=ENV_TANSU_BIN):
        find_tansu_binary()


def test_find_weed_binary_bad_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_WEED_BIN, "/nonexistent/weed")
    with pytest.raises(SourceError, match="not an executable"):
        find_weed_binary()


def test_broker_that_exits_at_startup_reports_its_log(tmp_path: Any) -> None:
    broker = LocalBroker(binary="/bin/false", workdir=tmp_path, startup_timeout_s=5)
    with pytest.raises(SourceError, match="exited during startup"):
        broker.start()
    assert not broker.is_running()


def test_s3_storage_requires_a_local_endpoint() -> None:
    with pytest.raises(ValueError, match="AWS_ENDPOINT"):
        LocalBroker(storage="s3://tansu/")


# --------------------------------------------------------------------------------------------
# real broker
# --------------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_local_broker_lifecycle() -> None:
    with LocalBroker() as broker:
        assert broker.startup_seconds is not None and broker.startup_seconds < 10
        pid, port = broker.pid, broker.port
        assert pid is not None and broker.bootstrap == f"127.0.0.1:{port}"
        broker.create_topic("lifecycle", partitions=2)
        broker.create_topic("lifecycle", partitions=2)  # idempotent
        broker.restart()
        assert broker.port == port and broker.pid not in (None, pid)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert "lifecycle" not in admin.list_topics()  # memory storage starts empty
        finally:
            admin.close()
        broker.stop()
        assert not broker.is_running() and broker.pid is None
        broker.stop()  # no-op


@pytest.mark.kafka
def test_keyed_produce_and_group_consume_with_manual_commit(
    kafka_broker: Any, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=3)
    total, first_batch = 300, 120
    metas = _produce(kafka_broker.bootstrap, topic, 0, total)

    partition_of_key: dict[str, int] = {}
    for seq, meta in enumerate(metas):
        key = KEYS[seq % len(KEYS)]
        assert partition_of_key.setdefault(key, meta.partition) == meta.partition
    assert len(set(partition_of_key.values())) > 1

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = _group_consumer(kafka_broker.bootstrap, topic, group)
    try:
        first = _consume_and_commit(consumer, first_batch)
        assert len(first) == first_batch
        committed_expected: dict[int, int] = defaultdict(int)
        for r in first:
            committed_expected[r.partition] = max(committed_expected[r.partition], r.offset + 1)
        for p, offset in committed_expected.items():
            assert consumer.committed(TopicPartition(topic, p)) == offset
    finally:
        consumer.close()

    consumer = _group_consumer(kafka_broker.bootstrap, topic, group)
    try:
        rest = _consume_and_commit(consumer, total - first_batch)
        assert not consumer.poll(timeout_ms=500)  # nothing beyond: no duplicates
    finally:
        consumer.close()

    assert len(first) + len(rest) == total
    assert _seqs(first + rest) == list(range(total))  # no loss, no duplicate
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in first + rest:
        assert r.key.decode() == KEYS[_seq(r) % len(KEYS)]
        per_key[r.key.decode()].append(_seq(r))
    for seqs in per_key.values():
        assert seqs == sorted(seqs)  # order per key is kept


@pytest.mark.kafka
def test_s3_storage_survives_broker_restart(s3_broker: LocalBroker) -> None:
    topic = s3_broker.create_topic(f"restart-{uuid.uuid4().hex[:8]}", partitions=3)
    bootstrap = s3_broker.bootstrap
    before = _produce(bootstrap, topic, 0, 100)
    end_before = {p: max(m.offset for m in before if m.partition == p) for p in range(3)}

    group = "restart-group"
    consumer = _group_consumer(bootstrap, topic, group)
    try:
        first = _consume_and_commit(consumer, 40)
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        consumer.close()
    assert len(first) == 40

    s3_broker.restart()

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert topic in admin.list_topics()
        (described,) = admin.describe_topics([topic])
        assert len(described["partitions"]) == 3
    finally:
        admin.close()

    consumer = _group_consumer(bootstrap, topic, group)
    try:
        assert {p: consumer.committed(TopicPartition(topic, p)) for p in range(3)} == committed
        rest = _consume_and_commit(consumer, 60)
        assert not consumer.poll(timeout_ms=500)
    finally:
        consumer.close()
    assert _seqs(first + rest) == list(range(100))

    # New records continue the offsets instead of overwriting the old ones.
    after = _produce(bootstrap, topic, 100, 10)
    for meta in after:
        assert meta.offset > end_before[meta.partition]

    # A crash (SIGKILL) loses no acknowledged record either.
    s3_broker.restart(kill=True)
    everything = _read_all_without_group(bootstrap, topic, 3, 110)
    assert _seqs(everything) == list(range(110))
