"""Per-key event-time sliding windows in numpy ring buffers.

All keys share one ``(slots, capacity, C)`` float32 array; a key owns a slot. ``capacity`` is
``W + H``: the newest ``W`` points form the window that is scored, and the whole ``W + H`` span
is a training example (first ``W`` points in, last ``H`` points as the continuation target).

Late and out-of-order records (``window.late_policy``):

* ``drop`` (default): a record older than its key's newest point goes to the dead-letter sink
  with reason ``late``; equal timestamps are accepted.
* ``reorder``: :class:`LatenessGate` holds records for ``allowed_lateness_ms`` of event time and
  releases them in event-time order; a record older than what was already released is dropped
  with reason ``late``.

Examples
--------
>>> import numpy as np
>>> s = WindowStore(n_channels=1, length=3, horizon=1, max_keys=10)
>>> for t in range(5):
...     slot, new = s.append("a", t, np.array([float(t)]))
>>> s.window(slot).ravel().tolist()
[2.0, 3.0, 4.0]
>>> s.span(slot).ravel().tolist()
[1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np

from streamgen.records import Record


class LateRecord(Exception):
    """Raised by :meth:`WindowStore.append` for a record older than its key's newest point."""


class WindowStore:
    """Ring buffers of the last ``length + horizon`` points per key, with bounded key count.

    When ``max_keys`` keys are tracked, the least recently updated key is evicted to make
    room (LRU); :meth:`evict_idle` drops keys idle for ``idle_ttl_ms`` of event time.
    """

    def __init__(
        self,
        n_channels: int,
        length: int,
        horizon: int,
        max_keys: int,
        idle_ttl_ms: int = 0,
        initial_slots: int = 64,
    ) -> None:
        self.n_channels = n_channels
        self.length = length
        self.horizon = horizon
        self.capacity = length + horizon
        self.max_keys = max_keys
        self.idle_ttl_ms = idle_ttl_ms
        n = max(1, min(initial_slots, max_keys))
        self.data = np.zeros((n, self.capacity, n_channels), dtype=np.float32)
        self.flags = np.zeros((n, self.capacity), dtype=bool)
        self.count = np.zeros(n, dtype=np.int64)
        self.head = np.zeros(n, dtype=np.int64)  # index of the next write
        self.last_ts = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        self.since_emit = np.zeros(n, dtype=np.int64)
        self.slots: OrderedDict[str, int] = OrderedDict()  # LRU order: oldest first
        self.keys: list[str | None] = [None] * n
        self._free = list(range(n - 1, -1, -1))
        self.evicted: list[tuple[str, int, str]] = []  # (key, slot, reason) since last drain
        self._ar = np.arange(self.capacity)

    # -- slots -------------------------------------------------------------------------
    @property
    def n_keys(self) -> int:
        return len(self.slots)

    @property
    def n_slots(self) -> int:
        return len(self.keys)

    def _grow(self) -> None:
        old = self.n_slots
        new = min(self.max_keys, old * 2)
        pad = new - old
        self.data = np.concatenate([self.data, np.zeros((pad, *self.data.shape[1:]), np.float32)])
        self.flags = np.concatenate([self.flags, np.zeros((pad, self.capacity), bool)])
        self.count = np.concatenate([self.count, np.zeros(pad, np.int64)])
        self.head = np.concatenate([self.head, np.zeros(pad, np.int64)])
        self.last_ts = np.concatenate(
            [self.last_ts, np.full(pad, np.iinfo(np.int64).min, np.int64)]
        )
        self.since_emit = np.concatenate([self.since_emit, np.zeros(pad, np.int64)])
        self.keys.extend([None] * pad)
        self._free.extend(range(new - 1, old - 1, -1))

    def _evict(self, key: str, reason: str) -> None:
        slot = self.slots.pop(key)
        self.keys[slot] = None
        self.count[slot] = 0
        self.head[slot] = 0
        self.since_emit[slot] = 0
        self.flags[slot] = False
        self.last_ts[slot] = np.iinfo(np.int64).min
        self._free.append(slot)
        self.evicted.append((key, slot, reason))

    def _allocate(self, key: str) -> int:
        if not self._free:
            if self.n_slots < self.max_keys:
                self._grow()
            else:
                oldest = next(iter(self.slots))
                self._evict(oldest, "capacity")
        slot = self._free.pop()
        self.slots[key] = slot
        self.keys[slot] = key
        return slot

    def drain_evicted(self) -> list[tuple[str, int, str]]:
        out, self.evicted = self.evicted, []
        return out

    def evict_idle(self, now_ms: int) -> int:
        """Evict keys whose newest point is older than ``now_ms - idle_ttl_ms``."""
        if not self.idle_ttl_ms:
            return 0
        cutoff = now_ms - self.idle_ttl_ms
        stale = [k for k, s in self.slots.items() if self.last_ts[s] < cutoff]
        for k in stale:
            self._evict(k, "idle")
        return len(stale)

    # -- points ------------------------------------------------------------------------
    def append(self, key: str, ts_ms: int, values: np.ndarray) -> tuple[int, bool]:
        """Fold one point into ``key``'s ring. Returns ``(slot, is_new_key)``.

        Raises :class:`LateRecord` if ``ts_ms`` is older than the key's newest point.
        """
        slot = self.slots.get(key)
        is_new = slot is None
        if slot is None:
            slot = self._allocate(key)
        else:
            if ts_ms < self.last_ts[slot]:
                raise LateRecord(key)
            self.slots.move_to_end(key)
        h = self.head[slot]
        self.data[slot, h] = values
        self.flags[slot, h] = False
        self.head[slot] = (h + 1) % self.capacity
        self.count[slot] += 1
        self.since_emit[slot] += 1
        self.last_ts[slot] = ts_ms
        return slot, is_new

    def _index(self, slot: int, n: int) -> np.ndarray:
        # The newest n points in time order.
        return (self.head[slot] - n + self._ar[:n]) % self.capacity

    def window(self, slot: int) -> np.ndarray:
        """The newest ``length`` points of ``slot`` as ``(W, C)`` (zeros before the start)."""
        return self.data[slot, self._index(slot, self.length)]

    def span(self, slot: int) -> np.ndarray:
        """The newest ``length + horizon`` points as ``(W + H, C)`` (a training example)."""
        return self.data[slot, self._index(slot, self.capacity)]

    def span_flagged(self, slot: int) -> bool:
        """Whether any point of the current span was flagged anomalous."""
        return bool(self.flags[slot].any())

    def flag_back(self, slot: int, back: int) -> None:
        """Flag the point ``back`` positions before the newest (0 = newest) as anomalous."""
        if 0 <= back < min(self.capacity, self.count[slot]):
            self.flags[slot, (self.head[slot] - 1 - back) % self.capacity] = True

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Plain/tensor-free state of the given keys (all by default), in LRU order."""
        import torch

        names = list(self.slots) if keys is None else [k for k in self.slots if k in set(keys)]
        idx = np.array([self.slots[k] for k in names], dtype=np.int64)
        # Store rings rotated so that position 0 is the oldest point: head becomes 0.
        rot = (self.head[idx, None] + self._ar[None, :]) % self.capacity if len(idx) else None
        data = self.data[idx[:, None], rot] if rot is not None else self.data[:0]
        flags = self.flags[idx[:, None], rot] if rot is not None else self.flags[:0]
        return {
            "keys": names,
            "data": torch.from_numpy(np.ascontiguousarray(data)),
            "flags": torch.from_numpy(np.ascontiguousarray(flags)),
            "count": torch.from_numpy(self.count[idx].copy()),
            "last_ts": torch.from_numpy(self.last_ts[idx].copy()),
            "since_emit": torch.from_numpy(self.since_emit[idx].copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> list[int]:
        """Merge keys from :meth:`state_dict`; returns their slots in the same order."""
        slots = []
        for i, key in enumerate(state["keys"]):
            if key in self.slots:
                self._evict(key, "reload")
            slot = self._allocate(key)
            self.data[slot] = state["data"][i].numpy()
            self.flags[slot] = state["flags"][i].numpy()
            self.count[slot] = int(state["count"][i])
            self.head[slot] = 0
            self.last_ts[slot] = int(state["last_ts"][i])
            self.since_emit[slot] = int(state["since_emit"][i])
            slots.append(slot)
        self.evicted = [e for e in self.evicted if e[2] != "reload"]
        return slots

    def remove(self, keys: Iterable[str]) -> None:
        """Forget keys (their partition was revoked); not reported as evictions."""
        for k in list(keys):
            if k in self.slots:
                self._evict(k, "revoked")
        self.evicted = [e for e in self.evicted if e[2] != "revoked"]


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
            while heap:
                out.append(heapq.heappop(heap)[2])
            if out:
                self._released[key] = out[-1].ts_ms
        self._heaps.clear()
        return sorted(out, key=lambda r: (r.ts_ms, r.position.partition, r.position.offset))

    def held(self) -> int:
        return sum(len(h) for h in self._heaps.values())
