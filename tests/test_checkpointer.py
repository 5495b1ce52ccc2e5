"""The service's checkpoint order without a broker (streamgen/checkpointer.py): flush the sinks
→ write state → commit offset + 1; a failed flush writes and commits nothing, a failed write
commits nothing; and the health watchdog (streamgen/health.py)."""

from __future__ import annotations

import json

import pytest

from streamgen.checkpointer import Checkpointer
from streamgen.checkpoints import PartitionCheckpoints
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import Metrics, RawMessage
from streamgen.errors import CheckpointError, SinkError
from streamgen.health import Health
from streamgen.io.files import ListSink
from streamgen.records import Position
from streamgen.service import ServiceStats

TP0 = ("t", 0)


class Log:
    def __init__(self) -> None:
        self.events: list[str] = []


class FlushSink(ListSink):
    def __init__(self, log: Log, fail: bool = False) -> None:
        super().__init__()
        self.log, self.fail = log, fail

    def flush(self) -> None:
        if self.fail:
            raise SinkError("refused")
        self.log.events.append("flush")


class Store(PartitionCheckpoints):
    def __init__(self, root, log: Log, fail: bool = False) -> None:  # noqa: ANN001
        super().__init__(root)
        self.log, self.fail = log, fail

    def save_model(self, engine: Engine) -> None:
        self.log.events.append("model")
        super().save_model(engine)

    def save_partition(self, engine: Engine, tp, keys, offset) -> None:  # noqa: ANN001
        if self.fail:
            raise CheckpointError("disk full")
        self.log.events.append(f"partition {tp[0]}-{tp[1]} {offset} {sorted(keys)}")
        super().save_partition(engine, tp, keys, offset)


class Source:
    def __init__(self, log: Log) -> None:
        self.log = log

    def commit(self, offsets, blocking: bool = True) -> None:  # noqa: ANN001
        self.log.events.append(f"commit {offsets}")


def _setup(tmp_path, *, fail_flush=False, fail_write=False):  # noqa: ANN001, ANN202
    cfg = apply_overrides(PipelineConfig(), ["model.hidden=16", "model.latent=4",
                                             "window.length=16", "model.horizon=4",
                                             "model.device=cpu"])
    log = Log()
    engine = Engine(cfg, Sinks(scores=FlushSink(log, fail_flush)))
    rows = [{"key": f"k{i % 2}", "ts": 1_700_000_000 + i, "x": float(i % 7)} for i in range(40)]
    engine.process([RawMessage(json.dumps(r).encode(), Position("t", 0, i))
                    for i, r in enumerate(rows)])
    stats = ServiceStats()
    health = Health(Metrics(), 60.0)
    cp = Checkpointer(engine, Store(tmp_path, log, fail_write), Metrics(), health, stats)
    cp.source = Source(log)  # type: ignore[assignment]
    return cp, log, engine


def test_flush_then_write_then_commit(tmp_path):
    cp, log, engine = _setup(tmp_path)
    assert cp.checkpoint([TP0]) is True
    assert log.events == ["flush", "model", "partition t-0 39 ['k0', 'k1']",
                          "commit {('t', 0): 40}"]
    # Nothing new: flushed again, nothing written or committed.
    log.events.clear()
    assert cp.checkpoint([TP0]) is True and log.events == ["flush"]
    # The partition's state loads into a fresh engine and resumes after its offset.
    fresh = Checkpointer(Engine(engine.cfg), PartitionCheckpoints(tmp_path), Metrics(),
                         Health(Metrics(), 60.0), ServiceStats())
    fresh.load_model()
    assert fresh.load_partition(TP0) == 39
    assert fresh.engine.partition_keys([TP0]) == {TP0: ["k0", "k1"]}
    fresh.engine.drop_partitions([TP0])
    assert fresh.engine.partition_keys([TP0]) == {TP0: []} and TP0 not in fresh.engine.offsets


def test_a_failed_flush_writes_and_commits_nothing(tmp_path):
    cp, log, _ = _setup(tmp_path, fail_flush=True)
    with pytest.raises(SinkError):
        cp.checkpoint([TP0])
    assert log.events == [] and not (tmp_path / "model.pt").exists()


def test_a_failed_write_commits_nothing(tmp_path):
    cp, log, _ = _setup(tmp_path, fail_write=True)
    assert cp.checkpoint([TP0]) is False
    assert log.events == ["flush", "model"] and cp.committed == {}


def test_the_watchdog_reports_a_stall_and_its_end():
    reports: list[bool] = []
    health = Health(Metrics(), stall_seconds=0.0, on_report=reports.append)
    health.connected = True
    health.watch({TP0: 10}, {}, {TP0: 0})  # 10 records wait, no progress since the start
    assert "records waiting" in health.problems["stalled"] and reports[-1] is False
    health.watch({TP0: 10}, {TP0: 10}, {TP0: 0})  # committed up to the end
    assert health.problems == {} and reports[-1] is True
