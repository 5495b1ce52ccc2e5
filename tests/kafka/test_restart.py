"""Stop and restart ``streamgen run`` mid-stream (SIGTERM and SIGKILL): every input offset
gets a score, duplicates only come from the un-checkpointed tail, and the restarted process
resumes from the checkpoint without folding any point twice."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.kafka.helpers import (
    Producing,
    RunProcess,
    checkpointed_offsets,
    read_input,
    read_topic,
    resumed_offsets,
    score_positions,
    stream_rows,
    window_counts,
    write_pipeline,
)

pytestmark = pytest.mark.kafka


def _top_rate(logs: list[dict]) -> float:
    """Highest records/s between consecutive checkpoint log lines of a run."""
    from datetime import datetime

    points = [(datetime.fromisoformat(r["ts"]).timestamp(), r["records"])
              for r in logs if r.get("msg") == "checkpoint"]
    rates = [(n1 - n0) / max(t1 - t0, 1e-3)
             for (t0, n0), (t1, n1) in zip(points, points[1:], strict=False)]
    return max(rates, default=0.0)


def _wait_done(proc: RunProcess, ends: dict[int, int], timeout_s: float) -> None:
    proc.wait_log(lambda r: r.get("msg") == "checkpoint"
                  and checkpointed_offsets([r]) == ends, timeout_s, f"a checkpoint at {ends}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stop_and_restart(kafka_broker, kafka_topic, tmp_path, sig):
    topic = kafka_topic(3)
    prefix = f"out-{uuid.uuid4().hex[:8]}"
    ckpt = tmp_path / "ckpt"
    pipeline = write_pipeline(tmp_path / "p.yaml", kafka_broker.bootstrap, topic, ckpt,
                              group=f"g-{uuid.uuid4().hex[:8]}", prefix=prefix)
    producing = Producing(kafka_broker.bootstrap, topic, stream_rows(n_keys=6, n_points=1000),
                          rate=1000.0, malformed_every=250)
    first = RunProcess(pipeline, tmp_path / "run1.log")
    try:
        first.wait_log(lambda r: r.get("msg") == "partitions assigned" and r["partitions"],
                       60, "the first assignment")
        producing.start()
        # Mid-stream: at least one checkpoint with records in it, stream still running.
        first.wait_log(lambda r: r.get("msg") == "checkpoint" and r["records"] >= 1500,
                       60, "a checkpoint after 1500 records")
        time.sleep(0.6)  # into the next interval: records processed but not checkpointed
        assert producing.is_alive(), "the stream ended before the stop"
        first.signal(sig)
        rc = first.proc.wait(60)
    finally:
        first.stop()
    if sig == signal.SIGTERM:
        assert rc == 0, first.tail()
        assert any(r.get("msg") == "stopped" and r["clean"] for r in first.logs())
    else:
        assert rc == -signal.SIGKILL
    last_ckpt = checkpointed_offsets(first.logs())

    second = RunProcess(pipeline, tmp_path / "run2.log")
    try:
        sent_rec = producing.finish()
        assert sent_rec.records
        sent = read_input(kafka_broker.bootstrap, topic)
        _wait_done(second, sent.ends(), 90)
        assert second.stop() == 0, second.tail()
    finally:
        second.stop()
    resumed = resumed_offsets(second.logs())
    # The restart resumed every partition from the last checkpoint the first run wrote.
    assert resumed == last_ckpt, (resumed, last_ckpt)

    scores = read_topic(kafka_broker.bootstrap, f"{prefix}.scores")
    positions = score_positions(scores, topic)
    missing = set(sent.records) - set(positions)
    assert not missing, f"{len(missing)} input offsets without a score"
    dups = {pos: c for pos, c in positions.items() if c > 1}
    print(f"{sig.name}: {len(sent.records)} inputs, resumed at {resumed}, {len(dups)} "
          f"duplicates, top rate {_top_rate(first.logs()):.0f}/s")
    if sig == signal.SIGTERM:
        assert not dups, f"{len(dups)} duplicates after a graceful stop"
    # Duplicates are outputs of records after the last checkpoint, re-processed once.
    assert all(c == 2 and off > resumed[p] for (p, off), c in dups.items()), dups
    # ... at most one checkpoint interval's worth at the first run's top rate, plus a batch.
    assert len(dups) <= _top_rate(first.logs()) * 1.5 + 1024, len(dups)
    # No point folded twice (and none lost) in any key's window state.
    assert window_counts(ckpt) == dict(sent.good_per_key())
