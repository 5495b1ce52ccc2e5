"""Raw kafka-python throughput on the test broker: the ceiling for any consumer built on it.

Produces ``--records`` small JSON records to a fresh topic and measures how fast a plain
kafka-python consumer in a consumer group reads them back (bytes only, no decoding, no
commits). Prints one line of JSON.

Usage::

    python benchmarks/bench_kafka_raw.py --records 100000            # starts a local Tansu
    python benchmarks/bench_kafka_raw.py --bootstrap 127.0.0.1:9092  # an existing cluster

Other benchmarks import :func:`raw_consume_rate` (and :func:`produce_json_records`) to report
their own rate relative to this ceiling.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `streamgen` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamgen.localbroker import TEST_GROUP_CONFIG, LocalBroker, create_topic  # noqa: E402

__all__ = ["consume_stats", "main", "produce_json_records", "raw_consume_rate"]


def produce_json_records(
    bootstrap: str, topic: str, n: int, *, keys: int = 100, seed: int = 0
) -> float:
    """Produce ``n`` small keyed JSON records (``acks="all"``) and return records per second.

    Parameters
    ----------
    bootstrap : str
        Broker address.
    topic : str
        Target topic (created by the broker on first use if it does not exist).
    n : int
        Number of records.
    keys : int
        Number of distinct keys (``"sensor-<i>"``), assigned round-robin.
    seed : int
        Seed of the random values.

    Returns
    -------
    float
        Records per second, from the first send to the end of ``flush``.
    """
    from kafka import KafkaProducer

    rng = random.Random(seed)
    key_bytes = [f"sensor-{i}".encode() for i in range(keys)]
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    try:
        t0 = time.perf_counter()
        base_ts = time.time()
        for seq in range(n):
            value = json.dumps(
                {"ts": round(base_ts + seq * 0.001, 3), "key": f"sensor-{seq % keys}",
                 "value": round(rng.gauss(0.0, 1.0), 6), "seq": seq},
                separators=(",", ":"),
            ).encode()
            producer.send(topic, key=key_bytes[seq % keys], value=value)
        producer.flush(timeout=300)
        elapsed = time.perf_counter() - t0
    finally:
        producer.close(timeout=10)
    return n / elapsed if elapsed > 0 else float("inf")


def consume_stats(
    bootstrap: str, topic: str, n: int, *, group_id: str | None = None, timeout_s: float = 300.0
) -> dict[str, float]:
    """Read ``n`` records of ``topic`` from the beginning in a fresh consumer group.

    Parameters
    ----------
    bootstrap : str
        Broker address.
    topic : str
        Topic holding at least ``n`` records.
    n : int
        Records to read.
    group_id : str, optional
        Consumer group; a new unique one by default (so the group starts at the beginning).
    timeout_s : float
        Upper bound on the whole read, group join included.

    Returns
    -------
    dict
        ``rate`` (records/s, timed from the first non-empty poll to the ``n``-th record, so
        the group join is excluded), ``join_s`` (seconds until the first records arrived),
        ``records`` (records read) and ``bytes`` (value bytes read).

    Raises
    ------
    TimeoutError
        If fewer than ``n`` records arrive within ``timeout_s``.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id or f"bench-raw-{uuid.uuid4().hex[:12]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **TEST_GROUP_CONFIG,
    )
    try:
        start = time.perf_counter()
        deadline = start + timeout_s
        count = 0
        nbytes = 0
        first_at: float | None = None
        first_count = 0
        while count < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"read {count} of {n} records from {topic!r} in {timeout_s} s")
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                count += len(records)
                nbytes += sum(len(r.value) for r in records if r.value is not None)
            if batch and first_at is None:
                first_at = time.perf_counter()
                first_count = count
        end = time.perf_counter()
    finally:
        consumer.close()
    assert first_at is not None
    timed = count - first_count
    rate = timed / (end - first_at) if end > first_at and timed > 0 else float("nan")
    return {"rate": rate, "join_s": first_at - start, "records": float(count),
            "bytes": float(nbytes)}


def raw_consume_rate(bootstrap: str, topic: str, n: int) -> float:
    """Raw kafka-python consume rate of a consumer group, in records per second.

    Parameters
    ----------
    bootstrap : str
        Broker address.
    topic : str
        Topic holding at least ``n`` records.
    n : int
        Records to read (from the beginning, in a fresh group; the join is not timed).

    Returns
    -------
    float
        Records per second.
    """
    return consume_stats(bootstrap, topic, n)["rate"]


def _run(bootstrap: str, records: int, partitions: int) -> dict[str, Any]:
    topic = f"bench-raw-{uuid.uuid4().hex[:12]}"
    create_topic(bootstrap, topic, partitions)
    produce_rate = produce_json_records(bootstrap, topic, records)
    stats = consume_stats(bootstrap, topic, records)
    return {
        "records": records,
        "partitions": partitions,
        "produce_rate": round(produce_rate, 1),
        "consume_rate": round(stats["rate"], 1),
        "group_join_s": round(stats["join_s"], 3),
        "avg_value_bytes": round(stats["bytes"] / max(stats["records"], 1.0), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints one line of JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records to produce")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument(
        "--bootstrap", default=None, help="existing broker; default: start a local Tansu"
    )
    args = parser.parse_args(argv)
    if args.records <= 0:
        parser.error("--records must be positive")

    result: dict[str, Any] = {"benchmark": "kafka_raw"}
    if args.bootstrap:
        result["broker"] = "external"
        result.update(_run(args.bootstrap, args.records, args.partitions))
    else:
        with LocalBroker() as broker:
            result["broker"] = "tansu-memory"
            result["broker_startup_s"] = round(broker.startup_seconds or 0.0, 3)
            result.update(_run(broker.bootstrap, args.records, args.partitions))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
