"""Two ``streamgen run`` processes in one consumer group sharing a checkpoint store: they
split the partitions; when one leaves, its partitions (and their key state) move to the other
through the checkpoints, with no input lost and no point folded twice; their models merge
into one group model (streamgen/merge.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.kafka.helpers import (
    Producing,
    RunProcess,
    checkpointed_offsets,
    read_input,
    read_topic,
    score_positions,
    stream_rows,
    window_counts,
    write_pipeline,
)

pytestmark = pytest.mark.kafka


def _latest_assignment(proc: RunProcess) -> list[str]:
    rows = [r for r in proc.logs() if r.get("msg") == "partitions assigned"]
    return rows[-1]["partitions"] if rows else []


def test_two_members_split_and_hand_over(kafka_broker, kafka_topic, tmp_path):
    topic = kafka_topic(3)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    ckpt = tmp_path / "ckpt"
    pipeline = write_pipeline(tmp_path / "p.yaml", kafka_broker.bootstrap, topic, ckpt,
                              group=f"g-{uuid.uuid4().hex[:8]}", prefix=prefix)
    producing = Producing(kafka_broker.bootstrap, topic, stream_rows(n_keys=6, n_points=1500),
                          rate=500.0, malformed_every=300)
    a = RunProcess(pipeline, tmp_path / "a.log")
    b = None
    try:
        a.wait_log(lambda r: r.get("msg") == "partitions assigned" and len(r["partitions"]) == 3,
                   60, "A owning all partitions")
        producing.start()
        a.wait_log(lambda r: r.get("msg") == "checkpoint" and r["records"] > 0, 30,
                   "A's first checkpoint")
        b = RunProcess(pipeline, tmp_path / "b.log")
        # Both members own partitions: the group split them.
        b.wait_log(lambda r: r.get("msg") == "partitions assigned" and r["partitions"], 60,
                   "B's assignment")
        a.wait_log(lambda r: r.get("msg") == "partitions assigned" and 0 < len(r["partitions"]) < 3,
                   30, "A's share after the split")
        split_a, split_b = _latest_assignment(a), _latest_assignment(b)
        assert sorted(split_a + split_b) == [f"{topic}-{p}" for p in range(3)]
        b.wait_log(lambda r: r.get("msg") == "checkpoint", 30, "B's first checkpoint")
        # A leaves (graceful): B takes over A's partitions from A's checkpoints.
        assert a.stop() == 0, a.tail()
        handed = {int(name.rsplit("-", 1)[1]) for name in split_a}
        b.wait_log(lambda r: r.get("msg") == "partitions assigned" and len(r["partitions"]) == 3,
                   60, "B owning all partitions")
        resumed_b = {int(r["partition"]): int(r["offset"]) for r in b.logs()
                     if r.get("msg") == "partition resumed from checkpoint"}
        assert handed <= set(resumed_b), (handed, resumed_b)
        producing.finish()
        sent = read_input(kafka_broker.bootstrap, topic)
        ends = sent.ends()
        b.wait_log(lambda r: r.get("msg") == "checkpoint" and checkpointed_offsets([r]) == ends,
                   90, f"B's checkpoint at {ends}")
        assert b.stop() == 0, b.tail()
    finally:
        a.stop()
        if b is not None:
            b.stop()
    scores = read_topic(kafka_broker.bootstrap, f"{prefix}.scores")
    positions = score_positions(scores, topic)
    missing = set(sent.records) - set(positions)
    assert not missing, f"{len(missing)} input offsets without a score"
    dups = sum(c - 1 for c in positions.values())
    print(f"split A={split_a} B={split_b}; handed over {sorted(handed)}; {dups} duplicates")
    assert dups == 0, "graceful hand-overs re-emit nothing"
    assert window_counts(ckpt) == dict(sent.good_per_key()), "key state lost or folded twice"
    # One model for the group (checkpoint.merge_models, on by default): the coordinator merged
    # the members' contributions into group versions, kept in the checkpoint store.
    rounds = [r for p in (a, b) for r in p.logs() if r.get("msg") == "group model"]
    assert any(r["merged"] >= 1 for r in rounds), rounds[-3:]
    assert (ckpt / "group" / "model.pt").is_file() and (ckpt / "members").is_dir()
