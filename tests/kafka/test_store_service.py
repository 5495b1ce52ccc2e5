"""The consumer service with ``checkpoint.dir: s3://...`` (a real S3 server, SeaweedFS): process
records, stop, restart as a new consumer group (no committed offsets to fall back on), and the
state resumes from the object store: every input scored exactly once, every point folded once.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from streamgen.checkpoints import PartitionCheckpoints
from streamgen.config import build_config
from streamgen.localbroker import TEST_GROUP_CONFIG
from streamgen.service import Service
from tests.kafka.helpers import (
    SMALL_MODEL,
    produce,
    read_input,
    read_topic,
    score_positions,
    stream_rows,
)

pytestmark = [pytest.mark.kafka, pytest.mark.scaleout]


def _config(bootstrap: str, topic: str, ckpt: str, prefix: str, s3) -> object:
    return build_config({
        "kafka": {"bootstrap_servers": bootstrap, "topics": [topic],
                  "group_id": f"g-{uuid.uuid4().hex[:8]}", "scores_topic": f"{prefix}.scores",
                  "continuations_topic": None, "alerts_topic": None,
                  "dead_letter_topic": f"{prefix}.dlq", "reconnect_backoff_max_seconds": 2},
        "checkpoint": {"dir": ckpt, "interval_seconds": 1,
                       "s3_endpoint": s3.endpoint, "s3_region": s3.region,
                       "s3_access_key": "env:SG_TEST_S3_KEY",
                       "s3_secret_key": "env:SG_TEST_S3_SECRET"},
        "metrics": {"enabled": False},
        **SMALL_MODEL,
    })


def _run(service: Service, done, timeout_s: float) -> None:
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
    time.sleep(1.5)  # anything more to read would be read now
    service.stop()
    thread.join(60)
    assert not thread.is_alive()


def test_state_resumes_from_the_object_store(kafka_broker, kafka_topic, local_s3, monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.setenv("SG_TEST_S3_KEY", local_s3.access_key)
    monkeypatch.setenv("SG_TEST_S3_SECRET", local_s3.secret_key)
    topic = kafka_topic(3)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    ckpt = f"s3://{local_s3.bucket}/svc-{uuid.uuid4().hex[:8]}"
    rows = stream_rows(n_keys=6, n_points=200)
    half = len(rows) // 2

    produce(kafka_broker.bootstrap, topic, rows[:half])
    first_sent = read_input(kafka_broker.bootstrap, topic)
    first = Service(_config(kafka_broker.bootstrap, topic, ckpt, prefix, local_s3),
                    kafka_options=TEST_GROUP_CONFIG)
    _run(first, lambda: first.stats.records >= half, 90)
    assert first.stats.records == half

    produce(kafka_broker.bootstrap, topic, rows[half:])
    sent = read_input(kafka_broker.bootstrap, topic)
    # A new group: nothing committed, so only the object store knows where to resume.
    second = Service(_config(kafka_broker.bootstrap, topic, ckpt, prefix, local_s3),
                     kafka_options=TEST_GROUP_CONFIG)
    _run(second, lambda: second.stats.records >= len(rows) - half, 90)
    assert second.stats.resumed == {f"{topic}-{p}": o for p, o in first_sent.ends().items()}
    assert second.stats.records == len(rows) - half, "records processed twice or missed"

    scores = read_topic(kafka_broker.bootstrap, f"{prefix}.scores")
    positions = score_positions(scores, topic)
    assert set(positions) == set(sent.records), "an input offset without a score"
    assert max(positions.values()) == 1, "duplicates after a graceful stop"

    # Every point folded exactly once, read back from the object store.
    store = PartitionCheckpoints(ckpt, second.cfg.checkpoint)
    counts: dict[str, int] = {}
    for p in range(3):
        state = store.load_partition((topic, p))
        assert state is not None and state["offset"] == sent.ends()[p]
        win = state["keys"]["windows"]
        for key, count in zip(win["keys"], win["count"].tolist(), strict=True):
            counts[key] = counts.get(key, 0) + int(count)
    assert counts == dict(sent.good_per_key())
    assert store.load_model() is not None
    versions = store.store.backend.list(f"partitions/{topic}-0/")
    assert 1 <= len(versions) <= 2  # cleanup: current and previous only
