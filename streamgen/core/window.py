"""Per-key event-time sliding windows in numpy ring buffers.

All keys share one ``(slots, capacity, C)`` float32 array; a key owns a slot. ``capacity`` is
``W + H``: the newest ``W`` points form the window that is scored, and the whole ``W + H`` span
is a training example (first ``W`` points in, last ``H`` points as the continuation target).

The engine folds a whole micro-batch at once with :meth:`WindowStore.fold`: one Python pass
assigns slots (LRU, late check), then numpy lays each key's ring and its new points end to end
(:class:`BatchFold`), so every window and span of the batch is one gather, and the rings are
written back once. :meth:`WindowStore.append` folds a single point (same semantics).

Late and out-of-order records (``window.late_policy``):

* ``drop`` (default): a record older than its key's newest point goes to the dead-letter sink
  with reason ``late``; equal timestamps are accepted.
* ``reorder``: :class:`~streamgen.core.gate.LatenessGate` holds records for
  ``allowed_lateness_ms`` of event time and releases them in event-time order; a record older
  than what was already released is dropped with reason ``late``.

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

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class LateRecord(Exception):
    """Raised by :meth:`WindowStore.append` for a record older than its key's newest point."""


@dataclass
class BatchFold:
    """Where :meth:`WindowStore.fold` put a micro-batch's points. Per record (batch order):
    ``slot`` (-1 = late), ``seg`` (its segment), ``pos`` (index within the segment),
    ``count`` (points its key holds after it), ``ready`` (it ends a due window) and ``row`` (its
    row in ``ext``); ``order`` lists the accepted records grouped by segment. Per segment (a
    key's run in one slot): ``seg_slot``, ``seg_key``, ``seg_fresh`` (the key is new to the
    store), ``seg_alive`` (the key still holds the slot after the batch) and ``seg_len``.
    ``ext`` holds each segment's earlier ring followed by its new points, so a window is
    ``length`` consecutive rows ending at the record's row.
    """

    length: int
    capacity: int
    slot: np.ndarray
    seg: np.ndarray
    pos: np.ndarray
    count: np.ndarray
    ready: np.ndarray
    row: np.ndarray
    order: np.ndarray
    seg_slot: np.ndarray
    seg_key: list[str]
    seg_fresh: np.ndarray
    seg_alive: np.ndarray
    seg_len: np.ndarray
    ext: np.ndarray  # (rows, C) float32
    ext_flags: np.ndarray  # (rows,) bool: the point was flagged anomalous before this batch
    _ar: np.ndarray

    def _rows(self, idx: np.ndarray, n: int) -> np.ndarray:
        return self.row[idx, None] - (n - 1) + self._ar[None, :n]

    def windows(self, idx: np.ndarray) -> np.ndarray:
        """The ``(len(idx), W, C)`` windows ending at records ``idx``, as scored then."""
        return self.ext[self._rows(idx, self.length)]

    def spans(self, idx: np.ndarray) -> np.ndarray:
        """The ``(len(idx), W + H, C)`` spans ending at records ``idx``."""
        return self.ext[self._rows(idx, self.capacity)]

    def span_flagged(self, idx: np.ndarray) -> np.ndarray:
        """Whether the span ending at each record ``idx`` holds a point flagged before."""
        return self.ext_flags[self._rows(idx, self.capacity)].any(axis=1)


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

    def _evict(self, key: str, reason: str, reset: bool = True) -> None:
        slot = self.slots.pop(key)
        self.keys[slot] = None
        self._free.append(slot)
        self.evicted.append((key, slot, reason))
        if reset:  # fold() defers this: it still reads the slot's old ring, then rewrites it
            self._reset(slot)

    def _reset(self, slot: int) -> None:
        self.count[slot] = 0
        self.head[slot] = 0
        self.since_emit[slot] = 0
        self.flags[slot] = False
        self.last_ts[slot] = np.iinfo(np.int64).min

    def _allocate(self, key: str, reset: bool = True) -> int:
        if not self._free:
            if self.n_slots < self.max_keys:
                self._grow()
            else:
                oldest = next(iter(self.slots))
                self._evict(oldest, "capacity", reset)
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

    # -- batches -----------------------------------------------------------------------
    def fold(
        self, keys: Sequence[str], ts_ms: Sequence[int], values: np.ndarray, stride: int = 1
    ) -> BatchFold:
        """Fold a micro-batch of points (``values``: ``(n, C)``) in order, as :meth:`append`
        would one by one; a late point is left out (``slot`` -1). Returns a :class:`BatchFold`
        from which any window or span of the batch can be gathered afterwards.

        A window is due (``ready``) when its key holds ``length`` points and ``stride`` points
        arrived since its last due window.
        """
        n = len(keys)
        rec_slot = np.full(n, -1, np.int64)
        rec_seg = np.full(n, -1, np.int64)
        # A segment is one key's run of points in one slot during this batch: the key's
        # earlier points (its ring, unless it is new here) followed by the batch's points.
        seg_slot: list[int] = []
        seg_key: list[str] = []
        seg_fresh: list[bool] = []
        current: dict[int, int] = {}  # slot -> its latest segment
        newest: dict[int, int] = {}  # slot -> newest accepted time in this batch
        slots, last_ts = self.slots, self.last_ts
        for i, (key, t) in enumerate(zip(keys, ts_ms, strict=True)):
            slot = slots.get(key)
            if slot is None:
                # Evictions only unlink the old key here: its ring is still read below.
                slot = self._allocate(key, reset=False)
                current[slot] = len(seg_slot)
                seg_slot.append(slot)
                seg_key.append(key)
                seg_fresh.append(True)
            else:
                s = current.get(slot)
                if s is None:
                    if t < last_ts[slot]:
                        continue
                    current[slot] = len(seg_slot)
                    seg_slot.append(slot)
                    seg_key.append(key)
                    seg_fresh.append(False)
                elif t < newest[slot]:
                    continue
                slots.move_to_end(key)
            newest[slot] = t
            rec_slot[i] = slot
            rec_seg[i] = current[slot]
        return self._fold_segments(
            rec_slot, rec_seg, np.asarray(ts_ms, np.int64), values,
            np.array(seg_slot, np.int64), seg_key, np.array(seg_fresh, bool),
            np.array(sorted(current.values()), np.int64), stride,
        )

    def _fold_segments(
        self, rec_slot: np.ndarray, rec_seg: np.ndarray, ts_ms: np.ndarray, values: np.ndarray,
        seg_slot: np.ndarray, seg_key: list[str], seg_fresh: np.ndarray, live: np.ndarray,
        stride: int,
    ) -> BatchFold:
        cap, W = self.capacity, self.length
        S = len(seg_slot)
        ok = np.flatnonzero(rec_seg >= 0)
        seg = rec_seg[ok]
        order = ok[np.argsort(seg, kind="stable")]  # records grouped by segment, in order
        seg_len = np.bincount(seg, minlength=S)
        first = np.cumsum(seg_len) - seg_len
        pos = np.empty(len(rec_seg), np.int64)
        pos[order] = np.arange(len(order)) - np.repeat(first, seg_len)
        # Each segment's ring (oldest first) then its new points, end to end in one buffer.
        base = cap * np.arange(S) + first
        carried = ~seg_fresh
        c_slot = seg_slot[carried]
        count0 = np.zeros(S, np.int64)
        since0 = np.zeros(S, np.int64)
        count0[carried] = self.count[c_slot]
        since0[carried] = self.since_emit[c_slot]
        ext = np.zeros((S * cap + len(ok), self.n_channels), np.float32)
        ext_flags = np.zeros(len(ext), bool)
        if len(c_slot):
            ring = (self.head[c_slot, None] + self._ar[None, :]) % cap
            rows = base[carried, None] + self._ar[None, :]
            ext[rows] = self.data[c_slot[:, None], ring]
            ext_flags[rows] = self.flags[c_slot[:, None], ring]
        rec_row = np.full(len(rec_seg), -1, np.int64)
        rec_row[ok] = base[seg] + cap + pos[ok]
        ext[rec_row[ok]] = values[ok]
        count = np.zeros(len(rec_seg), np.int64)
        count[ok] = count0[seg] + pos[ok] + 1
        # Due windows: the first once the key holds W points and stride points arrived since
        # the last due one, then every stride points.
        p0 = np.maximum(np.maximum(W - count0 - 1, stride - since0 - 1), 0)
        ready = np.zeros(len(rec_seg), bool)
        d = pos[ok] - p0[seg]
        ready[ok] = (d >= 0) & (d % stride == 0)
        # Write back the slots' final state: the live (last) segment of each slot.
        ls, m = seg_slot[live], seg_len[live]
        last = m - 1 - p0[live]
        since = np.where(last >= 0, last % stride, since0[live] + m)
        tail = base[live, None] + m[:, None] + self._ar[None, :]  # the newest cap rows
        self.data[ls] = ext[tail]
        self.flags[ls] = ext_flags[tail]
        self.head[ls] = 0
        self.count[ls] = count0[live] + m
        self.since_emit[ls] = since
        newest = np.full(S, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(newest, seg, ts_ms[ok])
        self.last_ts[ls] = np.where(m > 0, newest[live], self.last_ts[ls])
        for _key, slot, _reason in self.evicted:
            if self.keys[slot] is None:  # evicted and not taken again (not by fold itself)
                self._reset(slot)
        alive = np.zeros(S, bool)
        alive[live] = True
        return BatchFold(
            length=W, capacity=cap, slot=rec_slot, seg=rec_seg, pos=pos, count=count,
            ready=ready, row=rec_row, order=order, seg_slot=seg_slot, seg_key=seg_key,
            seg_fresh=seg_fresh, seg_alive=alive, seg_len=seg_len, ext=ext, ext_flags=ext_flags,
            _ar=self._ar,
        )

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Plain/tensor-free state of the given keys (all by default), in LRU order."""
        import torch

        if keys is None:
            names = list(self.slots)
        else:
            wanted = set(keys)  # once: built per key, it made this quadratic in the keys
            names = [k for k in self.slots if k in wanted]
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
