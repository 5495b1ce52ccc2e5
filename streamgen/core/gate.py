"""The ``reorder`` late policy: hold records per key for a while, release them in time order.

:class:`LatenessGate` holds each key's records for ``window.allowed_lateness_ms`` of event
time and releases them in event-time order; a record older than what its key already
released is returned as late (the engine dead-letters it with reason ``late``). What it
holds is state: the engine counts held records' offsets as consumed, so checkpoints carry
them (:meth:`LatenessGate.state_dict`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from streamgen.records import Record


class LatenessGate:
    """Holds records per key for ``allowed_lateness_ms`` and releases them in time order."""

    def __init__(self, allowed_lateness_ms: int) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self._heaps: dict[str, list[tuple[int, int, Record]]] = {}
        self._max_ts: dict[str, int] = {}
        self._released: dict[str, int] = {}
        self._tie = itertools.count()

    def offer(self, rec: Record) -> tuple[list[Record], Record | None]:
        """Add a record; return ``(released in time order, rejected-as-late or None)``."""
        if rec.ts_ms < self._released.get(rec.key, np.iinfo(np.int64).min):
            return [], rec
        heap = self._heaps.setdefault(rec.key, [])
        heapq.heappush(heap, (rec.ts_ms, next(self._tie), rec))
        mx = max(self._max_ts.get(rec.key, rec.ts_ms), rec.ts_ms)
        self._max_ts[rec.key] = mx
        out = []
        while heap and heap[0][0] <= mx - self.allowed_lateness_ms:
            out.append(heapq.heappop(heap)[2])
        if out:
            self._released[rec.key] = out[-1].ts_ms
        return out, None

    def flush(self) -> list[Record]:
        """Release everything held (end of a finite input), in time order per key."""
        out: list[Record] = []
        for key, heap in self._heaps.items():
            if heap:
                self._released[key] = max(e[2].ts_ms for e in heap)
            while heap:
                out.append(heapq.heappop(heap)[2])
        self._heaps.clear()
        return sorted(out, key=lambda r: (r.ts_ms, r.position.partition, r.position.offset))

    def held(self) -> int:
        return sum(len(h) for h in self._heaps.values())

    # -- checkpoints -------------------------------------------------------------------
    # Held records are state like a key's window: their offsets count as consumed, so a
    # checkpoint must carry them, or a restart would skip them.
    def state_dict(self, tps: Iterable[tuple[str, int]] | None = None) -> dict[str, Any]:
        """Records held from source partitions ``tps`` (all when None), in release order,
        and the release state of their keys: plain lists, dicts and tensors."""
        import torch

        want = None if tps is None else set(tps)
        held = sorted(e for h in self._heaps.values() for e in h
                      if want is None or (e[2].position.topic, e[2].position.partition) in want)
        recs = [e[2] for e in held]
        keys = sorted({r.key for r in recs})
        return {
            "key": [r.key for r in recs],
            "ts_ms": torch.tensor([r.ts_ms for r in recs], dtype=torch.int64),
            "values": torch.from_numpy(np.stack([r.values for r in recs]).astype(np.float64))
            if recs else torch.zeros((0, 0), dtype=torch.float64),
            "topic": [r.position.topic for r in recs],
            "partition": torch.tensor([r.position.partition for r in recs], dtype=torch.int64),
            "offset": torch.tensor([r.position.offset for r in recs], dtype=torch.int64),
            "label": [r.label for r in recs],
            "max_ts": {k: int(self._max_ts[k]) for k in keys},
            "released": {k: int(self._released[k]) for k in keys if k in self._released},
        }

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Hold the records of :meth:`state_dict` again (merged); returns how many."""
        from streamgen.records import Position

        for i, key in enumerate(state["key"]):
            pos = Position(state["topic"][i], int(state["partition"][i]), int(state["offset"][i]))
            rec = Record(key=key, ts_ms=int(state["ts_ms"][i]),
                         values=state["values"][i].numpy().copy(), position=pos,
                         label=state["label"][i])
            heapq.heappush(self._heaps.setdefault(key, []), (rec.ts_ms, next(self._tie), rec))
        for name, table in (("max_ts", self._max_ts), ("released", self._released)):
            for key, ts in state[name].items():
                table[key] = max(int(ts), table.get(key, int(ts)))
        return len(state["key"])

    def remove(self, tps: Iterable[tuple[str, int]]) -> int:
        """Forget records held from partitions ``tps`` (revoked or lost); returns how many."""
        gone, n = set(tps), 0
        for key, heap in list(self._heaps.items()):
            keep = [e for e in heap if (e[2].position.topic, e[2].position.partition) not in gone]
            if len(keep) == len(heap):
                continue
            n += len(heap) - len(keep)
            if keep:
                heapq.heapify(keep)
                self._heaps[key] = keep
            else:  # the key went with its partition: so does its release state
                del self._heaps[key]
                self._max_ts.pop(key, None)
                self._released.pop(key, None)
        return n
