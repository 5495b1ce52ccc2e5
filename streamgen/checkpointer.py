"""The service's checkpoints, in their order (docs/architecture.md, "Service loop and delivery
guarantees"): flush the sinks → write state → commit offsets.

:class:`Checkpointer` owns that order and its bookkeeping: the offset each partition's
checkpoint file holds, the offsets committed to Kafka, and when ``model.pt`` was last
written. It also restores: the model at start (``checkpoint.dir``, else ``--init-from``), a
partition's keys and held records on assignment, everything after a failed flush (rewind).
It touches the engine only through its partition-state API
(:meth:`~streamgen.core.engine.Engine.export_keys`, ``import_keys``, ...), by way of
:mod:`streamgen.core.checkpoint`.

With a group model (:mod:`streamgen.merge`, ``checkpoint.merge_models``), each checkpoint
ends with a merge round: publish what the model learned, merge if this member coordinates,
adopt a newer group version. A failed round is logged and retried at the next checkpoint; it
never fails the checkpoint (the state and offsets are already written).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from streamgen.core import checkpoint
from streamgen.core.engine import Engine
from streamgen.core.ports import Metrics
from streamgen.errors import CheckpointError, SinkError, SourceError
from streamgen.health import Health
from streamgen.jsonlog import fields

if TYPE_CHECKING:
    from streamgen.checkpoints import PartitionCheckpoints
    from streamgen.io.kafka import KafkaSource
    from streamgen.merge import GroupModel
    from streamgen.service import ServiceStats

log = logging.getLogger("streamgen.service")

TP = tuple[str, int]


class Checkpointer:
    """Flush → write state → commit for one engine (``store`` None: no ``checkpoint.dir``,
    flush and commit only)."""

    def __init__(
        self, engine: Engine, store: PartitionCheckpoints | None, metrics: Metrics,
        health: Health, stats: ServiceStats, group: GroupModel | None = None,
        coordinator: Callable[[], bool] = lambda: False,
    ) -> None:
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.health = health
        self.stats = stats
        self.source: KafkaSource | None = None  # set once the consumer exists (commits)
        self.saved: dict[TP, int] = {}  # partition -> offset in its checkpoint file
        self.committed: dict[TP, int] = {}  # partition -> last committed next offset
        self.held: dict[TP, int] = {}  # partition -> records its checkpoint put back in the gate
        self.model_saved_at = -1  # engine.records_total when model.pt was last written
        self.group = group  # the group model's member side, if merging
        self.coordinator = coordinator  # whether this member merges now

    # -- write ----------------------------------------------------------------------------
    def checkpoint(self, tps: list[TP], *, blocking_commit: bool = True) -> bool:
        """Flush → write state → commit for ``tps``; False if the state write failed.

        Raises
        ------
        SinkError
            If the sinks could not flush: the checkpoint is aborted (the caller rewinds).
        """
        t0 = time.perf_counter()
        engine = self.engine
        offsets = {tp: engine.offsets[tp] for tp in tps if tp in engine.offsets}
        try:
            # 1. Flush sinks: the rows of every record folded so far are on the broker.
            engine.flush_sinks()
            self.health.resolved("flush")
            # 2. Write state atomically: model, then each partition's keys and last offset.
            written = self.write_state(offsets) if self.store is not None else []
        except (SinkError, CheckpointError) as exc:
            self.metrics.checkpoint(time.perf_counter() - t0, time.time(), False)
            log.error("checkpoint aborted", extra=fields(error=str(exc)))
            if isinstance(exc, SinkError):
                raise
            return False
        # 3. Commit offset + 1: lag monitoring, and where a partition without state starts.
        commits = {tp: o + 1 for tp, o in offsets.items() if self.committed.get(tp) != o + 1}
        if commits:
            assert self.source is not None
            try:
                self.source.commit(commits, blocking=blocking_commit)
                self.committed.update(commits)
                self.health.resolved("commit")
                self.health.progressed()
            except SourceError as exc:
                self.health.problem("commit", str(exc))
        self.merge_round()
        secs = time.perf_counter() - t0
        self.metrics.checkpoint(secs, time.time(), True)
        self.metrics.stage_latency("checkpoint", secs)
        self.stats.checkpoints += 1
        if written or commits:
            log.info("checkpoint", extra=fields(
                seconds=round(secs, 4), written=[f"{t}-{p}" for t, p in written],
                offsets={f"{t}-{p}": o for (t, p), o in offsets.items()},
                records=self.stats.records,
            ))
        return True

    def write_state(self, offsets: dict[TP, int]) -> list[TP]:
        """``model.pt`` (if records were processed since it was written), then the file of
        each partition whose offset moved; returns those partitions."""
        assert self.store is not None
        engine = self.engine
        dirty = [tp for tp, o in offsets.items() if self.saved.get(tp) != o]
        if not dirty:
            return []
        if engine.has_model and engine.records_total != self.model_saved_at:
            self.store.save_model(engine)
            self.model_saved_at = engine.records_total
        by_tp = engine.partition_keys(dirty)
        for tp in dirty:
            self.store.save_partition(engine, tp, by_tp[tp], offsets[tp])
            self.saved[tp] = offsets[tp]
        return dirty

    def merge_round(self) -> None:
        """Publish, merge (coordinator), adopt (:meth:`GroupModel.sync`); logged, not raised."""
        if self.group is None or not self.engine.has_model:
            return
        try:
            res = self.group.sync(self.engine, coordinator=self.coordinator())
        except (CheckpointError, KeyError, ValueError, RuntimeError) as exc:
            log.warning("group model round failed; retried at the next checkpoint",
                        extra=fields(error=str(exc)))
            return
        if res.merged or res.adopted is not None:
            from streamgen.merge import weights_digest

            log.info("group model", extra=fields(
                version=res.version, merged=res.merged, adopted=res.adopted,
                published_steps=res.published_steps, member=self.group.member_id,
                digest=weights_digest(self.engine.model_weights())))

    def start_group(self) -> None:
        """Adopt the newest group version (a new or restarted member, or after a rewind)."""
        if self.group is None or not self.engine.has_model:
            return
        try:
            version = self.group.start(self.engine)
        except (CheckpointError, KeyError, ValueError, RuntimeError) as exc:
            log.warning("group model unreadable; starting from this member's own model",
                        extra=fields(error=str(exc)))
            return
        log.info("group model adopted", extra=fields(version=version,
                                                      member=self.group.member_id))

    # -- restore --------------------------------------------------------------------------
    def load_model(self, init_from: str | Path | None = None) -> None:
        """The model of ``checkpoint.dir``, else the weights of ``init_from``, if any."""
        state = self.store.load_model() if self.store is not None else None
        source = str(self.store.model_path) if state is not None and self.store else None
        if state is None and init_from is not None:
            state, source = checkpoint.load(init_from), str(init_from)
        if state is None:
            return
        try:
            checkpoint.load_model_state(self.engine, state)
        except Exception as exc:  # shape mismatch between checkpoint and pipeline
            raise CheckpointError(f"{source}: does not fit this pipeline's model: {exc}") from exc
        self.model_saved_at = self.engine.records_total
        log.info("model loaded", extra=fields(path=source, step=self.engine.step,
                                               channels=self.engine.channels))
        self.start_group()

    def reload_model(self) -> None:
        """After a failed flush: the model as ``model.pt`` holds it (kept if there is none)."""
        if self.store is None:
            return
        state = self.store.load_model()
        if state is not None:
            checkpoint.load_model_state(self.engine, state)
            self.model_saved_at = self.engine.records_total
            self.start_group()  # the member's anchor is the group version again

    def load_partition(self, tp: TP) -> int | None:
        """Load ``tp``'s checkpoint into the engine; its offset, or None (no usable state)."""
        if self.store is None:
            return None
        try:
            state = self.store.load_partition(tp)
            if state is None:
                return None
            self.held[tp] = checkpoint.load_partition_state(self.engine, state)
        except (CheckpointError, KeyError, ValueError) as exc:
            log.error("partition checkpoint unusable; starting from the committed offset",
                      extra=fields(topic=tp[0], partition=tp[1], error=str(exc)))
            self.metrics.checkpoint(0.0, time.time(), False)
            return None
        offset = int(state["offset"])
        self.engine.offsets[tp] = offset
        self.saved[tp] = offset
        return offset

    def forget(self, tps: list[TP]) -> None:
        """Drop the bookkeeping of partitions no longer ours."""
        for tp in tps:
            self.saved.pop(tp, None)
            self.committed.pop(tp, None)
            self.held.pop(tp, None)
