"""The consumer service in-process against the test broker: one score per input offset, dead
letters with reasons, commits, and recovery from a broker restart."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from streamgen.config import build_config
from streamgen.core.engine import Sinks
from streamgen.errors import CheckpointError
from streamgen.io.files import ListSink
from streamgen.io.metrics import PrometheusMetrics
from streamgen.localbroker import TEST_GROUP_CONFIG
from streamgen.service import Service
from tests.kafka.helpers import (
    MALFORMED,
    PRODUCERS,
    SMALL_MODEL,
    Producing,
    produce,
    read_input,
    read_topic,
    score_positions,
    stream_rows,
    window_counts,
)

pytestmark = pytest.mark.kafka


def _config(bootstrap: str, topic: str, ckpt: Path | None, prefix: str, **extra: object):
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "topics": [topic],
                  "group_id": f"g-{uuid.uuid4().hex[:8]}", "scores_topic": f"{prefix}.scores",
                  "continuations_topic": f"{prefix}.cont", "alerts_topic": f"{prefix}.alerts",
                  "dead_letter_topic": f"{prefix}.dlq", "reconnect_backoff_max_seconds": 2},
        "checkpoint": {"dir": None if ckpt is None else str(ckpt), "interval_seconds": 1},
        "metrics": {"enabled": False},
        **SMALL_MODEL,
    }
    data.update(extra)
    return build_config(data)


def _run_until(service: Service, done, timeout_s: float) -> threading.Thread:
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
    return thread


@pytest.mark.parametrize("producer", PRODUCERS)
def test_one_score_per_offset_and_dead_letters(kafka_broker, kafka_topic, tmp_path, producer):
    topic = kafka_topic(3)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    rows = stream_rows(n_keys=6, n_points=300)
    produce(kafka_broker.bootstrap, topic, rows, malformed_every=150)
    sent = read_input(kafka_broker.bootstrap, topic)
    n = len(sent.records)
    bad = {pos for pos, (_, good) in sent.records.items() if not good}
    assert n == len(rows) + len(bad) and len(bad) == 12
    assert len({p for p, _ in sent.records}) == 3  # keys spread over all partitions

    cfg = _config(kafka_broker.bootstrap, topic, tmp_path / "ckpt", prefix)
    cfg = cfg.model_copy(update={"kafka": cfg.kafka.model_copy(update={"producer": producer})})
    service = Service(cfg, kafka_options=TEST_GROUP_CONFIG)
    thread = _run_until(service, lambda: service.stats.records >= n, 90)
    assert service.producer is not None and service.producer.kind == producer
    service.stop()
    thread.join(60)
    assert not thread.is_alive()
    assert service.stats.records == n and service.stats.dead_letters == len(bad)

    scores = read_topic(kafka_broker.bootstrap, f"{prefix}.scores")
    positions = score_positions(scores, topic)
    assert len(scores) == n, "exactly one score row per input record"
    assert set(positions) == set(sent.records) and max(positions.values()) == 1
    for s in scores:
        good = sent.records[(s["partition"], s["offset"])][1]
        assert (s["error"] is None) == good
        if good:
            assert isinstance(s["score"], float)
    dlq = read_topic(kafka_broker.bootstrap, f"{prefix}.dlq")
    assert {(d["partition"], d["offset"]) for d in dlq} == bad
    assert all(d["reason"] for d in dlq)
    raws = sorted(d["raw"].encode() for d in dlq)
    assert raws == sorted(MALFORMED * 2)

    # State and commits: every good point folded once; Kafka commits at the end of each partition.
    assert window_counts(tmp_path / "ckpt") == dict(sent.good_per_key())
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap,
                             group_id=cfg.kafka.group_id, enable_auto_commit=False)
    try:
        for p, last in sent.ends().items():
            assert consumer.committed(TopicPartition(topic, p)) == last + 1
    finally:
        consumer.close()


def test_secrets_are_resolved_and_never_logged(kafka_broker, kafka_topic, tmp_path, caplog,
                                              monkeypatch):
    secret = "hunter2-" + uuid.uuid4().hex
    monkeypatch.setenv("SG_TEST_SSL_PASSWORD", secret)
    topic = kafka_topic(1)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    produce(kafka_broker.bootstrap, topic, stream_rows(n_keys=1, n_points=50))
    cfg = _config(kafka_broker.bootstrap, topic, None, prefix)
    cfg = cfg.model_copy(update={"kafka": cfg.kafka.model_copy(
        update={"security": {"ssl_password": "env:SG_TEST_SSL_PASSWORD"}})})
    service = Service(cfg, kafka_options=TEST_GROUP_CONFIG)
    with caplog.at_level("DEBUG"):
        thread = _run_until(service, lambda: service.stats.records >= 50, 60)
        service.stop()
        thread.join(30)
    assert service.stats.records == 50
    assert service.source is not None
    assert service.source.consumer.config["ssl_password"] == secret
    text = "\n".join(r.getMessage() + repr(getattr(r, "fields", "")) for r in caplog.records)
    assert "ssl_password" in text and secret not in text


def test_broker_restart_recovers(s3_broker, tmp_path):
    """Broker down mid-stream: unready (/readyz 503, healthy 0) while away, then every record
    is scored (at least once) and the service is ready again."""
    bootstrap = s3_broker.bootstrap
    topic = s3_broker.create_topic(f"in-{uuid.uuid4().hex[:8]}", 3)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    cfg = _config(bootstrap, topic, tmp_path / "ckpt", prefix,
                  metrics={"enabled": True, "port": 0})
    metrics = PrometheusMetrics()
    tee = ListSink()  # what the engine emitted: tells broker-side loss from a skipped input
    service = Service(cfg, metrics=metrics, kafka_options=TEST_GROUP_CONFIG,
                      tee=Sinks(scores=tee))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    producing = Producing(bootstrap, topic, stream_rows(n_keys=4, n_points=500), rate=150.0)
    producing.start()
    statuses: list[int] = []
    watching = threading.Event()

    def watch_ready() -> None:
        while not watching.is_set():
            server = service.metrics_server
            try:
                url = server.url if server is not None else None
            except RuntimeError:  # stopped meanwhile
                url = None
            if url is not None:
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                        statuses.append(resp.status)
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)
                except OSError:
                    pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_ready, daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while service.stats.records < 300 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.stats.records >= 300, "no progress before the restart"
        s3_broker.stop()
        deadline = time.monotonic() + 15
        while service.stats.healthy and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not service.stats.healthy, "outage not reported"
        assert metrics.is_healthy() is False
        time.sleep(1.0)
        s3_broker.start()
        t_restart = time.monotonic()
        producing.finish(timeout=120)
        sent = read_input(bootstrap, topic)
        n = len(sent.records)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if service.stats.healthy and (service.stats.lag == 0
                                          and service.stats.records >= n):
                break
            time.sleep(0.2)
        t_caught_up = time.monotonic() - t_restart
        time.sleep(1.5)  # one more checkpoint interval
    finally:
        service.stop()
        thread.join(60)
        watching.set()
        watcher.join(5)
    print(f"caught up {t_caught_up:.1f}s after the restart; rewinds {service.stats.rewinds}")
    assert 503 in statuses, "/readyz never reported the outage"
    assert 200 in statuses[statuses.index(503):], "/readyz never recovered"
    scores = read_topic(bootstrap, f"{prefix}.scores")
    positions = score_positions(scores, topic)
    missing = set(sent.records) - set(positions)
    emitted = score_positions(tee.rows, topic)
    assert not missing, (f"{len(missing)} input offsets without a score on the topic "
                         f"({sum(m in emitted for m in missing)} of them were emitted)")
    dups = sum(c - 1 for c in positions.values())
    assert dups <= 2000, f"{dups} duplicates"
    assert window_counts(tmp_path / "ckpt") == dict(sent.good_per_key())


def test_init_from_warm_starts_only_without_a_checkpoint(tmp_path):
    """``--init-from`` loads model weights when checkpoint.dir has no model yet; a model in
    checkpoint.dir (a restart) wins over it."""
    from streamgen.bench.synthetic import write_stream
    from streamgen.cli import main
    from streamgen.core import checkpoint

    data = tmp_path / "hist.csv"
    write_stream(data, n_keys=2, n_points=300, seed=1)
    warm = tmp_path / "warm.pt"
    sets = ["--set", "model.hidden=16", "--set", "model.latent=4", "--set", "model.horizon=4",
            "--set", "window.length=16"]
    assert main(["score", str(data), "--output", str(tmp_path / "s.csv"),
                 "--checkpoint-out", str(warm), *sets]) == 0
    warm_step = checkpoint.load(warm)["learner"]["step"]
    assert warm_step > 0

    cfg = _config("127.0.0.1:9", "in", tmp_path / "ckpt", "unused")
    service = Service(cfg, init_from=warm)
    service._load_model()  # the first step of run(), before any broker is contacted
    assert service.engine.learner is not None and service.engine.learner.step == warm_step
    assert service.engine.channels == ["x0"]

    # A model in checkpoint.dir is the state to resume: --init-from is ignored then.
    service.engine.learner.step = warm_step + 1000
    service.ckpt.save_model(service.engine)
    again = Service(cfg, init_from=warm)
    again._load_model()
    assert again.engine.learner.step == warm_step + 1000

    # A checkpoint of another model shape is a config error naming the file.
    other = Service(_config("127.0.0.1:9", "in", None, "u", model={"hidden": 32}),
                    init_from=warm)
    with pytest.raises(CheckpointError, match="warm.pt"):
        other._load_model()


def test_a_record_too_big_to_dead_letter_whole_does_not_stall_the_partition(
    kafka_broker, kafka_topic, tmp_path
):
    """A ~1 MB poison value used to make a dead-letter row four times its size: the producer
    refused it, the sink failed, the service rewound to the same record forever. The
    dead-letter row now keeps a bounded prefix, the length and a digest."""
    import hashlib

    from kafka import KafkaProducer

    topic = kafka_topic(2)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    rows = stream_rows(n_keys=2, n_points=60)
    sent = produce(kafka_broker.bootstrap, topic, rows[:60])
    poison = b"\x01" * 990_000
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all",
                             max_request_size=2_000_000)
    try:
        meta = producer.send(topic, key=b"sensor-0", value=poison).get(timeout=30)
    finally:
        producer.close(timeout=10)
    produce(kafka_broker.bootstrap, topic, rows[60:], sent=sent)
    n = len(rows) + 1
    cfg = _config(kafka_broker.bootstrap, topic, tmp_path / "ckpt", prefix)
    service = Service(cfg, kafka_options=TEST_GROUP_CONFIG)
    thread = _run_until(service, lambda: service.stats.records >= n, 90)
    service.stop()
    thread.join(60)
    assert service.stats.records == n and service.stats.dead_letters == 1
    dlq = read_topic(kafka_broker.bootstrap, f"{prefix}.dlq")
    assert len(dlq) == 1
    d = dlq[0]
    assert (d["partition"], d["offset"]) == (meta.partition, meta.offset)
    assert d["raw_bytes"] == len(poison) and d["raw_truncated"] is True
    assert d["raw_sha256"] == hashlib.sha256(poison).hexdigest()
    assert len(d["raw"]) <= 4 * 16_384 and d["key"] == "sensor-0"
    assert len(read_topic(kafka_broker.bootstrap, f"{prefix}.scores")) == n


def test_a_sink_that_always_fails_is_reported_as_a_stall(kafka_broker, kafka_topic, tmp_path):
    """Alive, polling, rewinding to the same batch on every failed flush: before the
    watchdog, health stayed green. Now no committed progress for health.stall_seconds while
    records wait turns the service unhealthy, with the reason; the metric says since when."""
    from streamgen.errors import SinkError

    class Failing(ListSink):
        def flush(self) -> None:
            raise SinkError("refused by the test")

    topic = kafka_topic(1)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    produce(kafka_broker.bootstrap, topic, stream_rows(n_keys=2, n_points=100))
    cfg = _config(kafka_broker.bootstrap, topic, tmp_path / "ckpt", prefix,
                  health={"stall_seconds": 3})
    metrics = PrometheusMetrics()
    service = Service(cfg, metrics=metrics, kafka_options=TEST_GROUP_CONFIG,
                      tee=Sinks(scores=Failing()))
    thread = _run_until(service, lambda: "stalled" in service.health.problems, 60)
    try:
        assert "stalled" in service.health.problems, service.health.problems
        assert "records waiting" in service.health.problems["stalled"]
        assert not service.stats.healthy
        assert metrics._progress._value.get() == 0  # no offset ever moved
    finally:
        service.stop()
        thread.join(60)


def test_a_recreated_topic_is_read_from_its_start_not_from_a_stale_checkpoint(
    kafka_broker, kafka_topic, tmp_path
):
    """The checkpoint says offset 299; the topic was deleted and created again and holds
    offsets 0-99. The restarted member must see that the saved offset lies beyond the
    partition's end, say so, drop the stale state and read the new records."""
    from streamgen.localbroker import delete_topics

    topic = kafka_topic(1)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    produce(kafka_broker.bootstrap, topic, stream_rows(n_keys=2, n_points=150))
    cfg = _config(kafka_broker.bootstrap, topic, tmp_path / "ckpt", prefix)
    first = Service(cfg, kafka_options=TEST_GROUP_CONFIG)
    thread = _run_until(first, lambda: first.stats.records >= 300, 90)
    first.stop()
    thread.join(60)
    assert first.stats.records == 300
    delete_topics(kafka_broker.bootstrap, [topic], timeout_s=10.0)
    time.sleep(1.0)
    kafka_broker.create_topic(topic, 1)
    produce(kafka_broker.bootstrap, topic, stream_rows(n_keys=2, n_points=50))
    metrics = PrometheusMetrics()
    second = Service(cfg, metrics=metrics, kafka_options=TEST_GROUP_CONFIG)
    thread = _run_until(second, lambda: second.stats.records >= 100, 60)
    second.stop()
    thread.join(60)
    assert second.stats.records == 100, "every record of the new topic was read"
    resets = metrics._offset_resets.labels("beyond_end")._value.get()
    assert resets == 1
