"""Three ``streamgen run`` processes in one consumer group on six partitions, their state in a
real S3 server (SeaweedFS) and nothing else shared but the broker.

One member (the group-model coordinator, owner of partition 0) is killed with SIGKILL
mid-stream: its partitions and their key state move to the others through the object store;
no input offset goes without a score, the only duplicates are the killed member's
un-checkpointed tail, and no point is folded twice. Once the stream is idle the survivors'
models converge on one group version (same version, same weights digest), and a member that
joins afterwards starts from that version.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamgen.checkpoints import PartitionCheckpoints
from streamgen.config import build_config
from tests.kafka.helpers import (
    Producing,
    RunProcess,
    checkpointed_offsets,
    read_input,
    read_topic,
    score_positions,
    stream_rows,
    write_pipeline,
)
from tests.kafka.test_restart import _top_rate

pytestmark = [pytest.mark.kafka, pytest.mark.scaleout]

PARTITIONS = 6


def _assigned(proc: RunProcess) -> list[int]:
    rows = [r for r in proc.logs() if r.get("msg") == "partitions assigned"]
    return sorted(int(n.rsplit("-", 1)[1]) for n in rows[-1]["partitions"]) if rows else []


def _wait(pred: Any, timeout_s: float, what: str, procs: list[RunProcess]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"a member exited before {what}:\n{p.tail()}")
        time.sleep(0.2)
    tails = "\n---\n".join(p.tail(15) for p in procs)
    raise AssertionError(f"timed out waiting for {what}:\n{tails}")


def _last_round(proc: RunProcess) -> dict[str, Any] | None:
    rows = [r for r in proc.logs() if r.get("msg") == "group model"]
    return rows[-1] if rows else None


def _store_window_counts(store: PartitionCheckpoints, topic: str) -> dict[str, int]:
    out: Counter[str] = Counter()
    for p in range(PARTITIONS):
        state = store.load_partition((topic, p))
        if state is None or state["keys"] is None:
            continue
        win = state["keys"]["windows"]
        for key, count in zip(win["keys"], win["count"].tolist(), strict=True):
            out[key] += int(count)
    return dict(out)


def test_three_members_sigkill_through_the_object_store(kafka_broker, kafka_topic, local_s3,
                                                        tmp_path: Path, monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.setenv("SG_TEST_S3_KEY", local_s3.access_key)
    monkeypatch.setenv("SG_TEST_S3_SECRET", local_s3.secret_key)
    topic = kafka_topic(PARTITIONS)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    ckpt = f"s3://{local_s3.bucket}/scale-{uuid.uuid4().hex[:8]}"
    s3 = {"s3_endpoint": local_s3.endpoint, "s3_region": local_s3.region,
          "s3_access_key": "env:SG_TEST_S3_KEY", "s3_secret_key": "env:SG_TEST_S3_SECRET"}
    pipeline = write_pipeline(tmp_path / "p.yaml", kafka_broker.bootstrap, topic,
                              ckpt, group=f"g-{uuid.uuid4().hex[:8]}",  # type: ignore[arg-type]
                              prefix=prefix, checkpoint=s3)
    producing = Producing(kafka_broker.bootstrap, topic, stream_rows(n_keys=12, n_points=500),
                          rate=400.0, malformed_every=300)
    members = [RunProcess(pipeline, tmp_path / f"m{i}.log") for i in range(3)]
    late: RunProcess | None = None
    try:
        _wait(lambda: all(_assigned(m) for m in members)
              and sorted(p for m in members for p in _assigned(m)) == list(range(PARTITIONS)),
              90, "three members splitting six partitions", members)
        producing.start()
        # The coordinator (owner of partition 0) has checkpointed and merged at least once.
        victim = next(m for m in members if 0 in _assigned(m))
        survivors = [m for m in members if m is not victim]
        victim.wait_log(lambda r: r.get("msg") == "group model" and r["merged"] >= 1, 60,
                        "a merged group version")
        victim.wait_log(lambda r: r.get("msg") == "checkpoint" and r["records"] >= 300, 60,
                        "the victim's checkpoint with records")
        time.sleep(0.6)  # into the next interval: records processed but not checkpointed
        assert producing.is_alive(), "the stream ended before the kill"
        owned_by_victim = _assigned(victim)
        victim.signal(signal.SIGKILL)
        assert victim.proc.wait(30) == -signal.SIGKILL
        last_ckpt = checkpointed_offsets(victim.logs())

        # The survivors take over all six partitions, resuming from the object store.
        _wait(lambda: sorted(p for m in survivors for p in _assigned(m))
              == list(range(PARTITIONS)), 90, "the survivors owning all partitions", survivors)
        producing.finish()
        sent = read_input(kafka_broker.bootstrap, topic)
        ends = sent.ends()

        def done() -> bool:
            got: dict[int, int] = {}
            for m in survivors:
                got.update({p: o for p, o in checkpointed_offsets(m.logs()).items()
                            if p in _assigned(m)})
            return got == ends

        _wait(done, 120, f"checkpoints at {ends}", survivors)
        resumed = {int(r["partition"]): int(r["offset"]) for m in survivors for r in m.logs()
                   if r.get("msg") == "partition resumed from checkpoint"}
        for p in owned_by_victim:
            assert resumed.get(p) == last_ckpt[p], (p, resumed, last_ckpt)

        # Idle: the survivors' models converge on one group version.
        def converged() -> bool:
            rounds = [_last_round(m) for m in survivors]
            return all(r is not None for r in rounds) and len(
                {(r["version"], r["digest"]) for r in rounds if r is not None}) == 1

        _wait(converged, 60, "one group model on both survivors", survivors)
        final = _last_round(survivors[0])
        assert final is not None
        # A member joining now starts from that version.
        late = RunProcess(pipeline, tmp_path / "late.log")
        adopted = late.wait_log(lambda r: r.get("msg") == "group model adopted", 90,
                                "the late member adopting the group model")
        assert adopted["version"] >= final["version"]
        for m in [*survivors, late]:
            assert m.stop() == 0, m.tail()
    finally:
        for m in [*members, *([late] if late else [])]:
            m.stop()

    scores = read_topic(kafka_broker.bootstrap, f"{prefix}.scores")
    positions = score_positions(scores, topic)
    missing = set(sent.records) - set(positions)
    assert not missing, f"{len(missing)} input offsets without a score"
    dups = {pos: c for pos, c in positions.items() if c > 1}
    top = _top_rate(victim.logs())
    print(f"victim owned {owned_by_victim}, resumed at {resumed}; {len(sent.records)} inputs, "
          f"{len(dups)} duplicates (victim's top rate {top:.0f}/s); group version "
          f"{final['version']} digest {final['digest']}")
    # Duplicates: only the killed member's records after its last checkpoint, re-scored once.
    assert all(c == 2 and p in owned_by_victim and off > last_ckpt[p]
               for (p, off), c in dups.items()), dups
    assert len(dups) <= top * 1.5 + 1024, len(dups)

    cfg = build_config({"checkpoint": {"dir": ckpt, **s3}})
    store = PartitionCheckpoints(ckpt, cfg.checkpoint)
    assert _store_window_counts(store, topic) == dict(sent.good_per_key()), \
        "key state lost or folded twice"
    group = store.store.load("group/model")
    assert group is not None and group["version"] >= final["version"]
