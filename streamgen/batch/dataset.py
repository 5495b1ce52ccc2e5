"""Windows for batch training: per key, event-time order, normalized, split by time.

Offline, the whole history of a key is known, so windows are cut with a strided view of the
key's sorted array instead of the streaming ring buffer (same result, a thousand times
faster), and normalization is a per-key mean/std *fitted on the training split only* (the
streaming normalizer adapts online; here a fixed scale keeps validation honest).

For each key the first ``1 - val_fraction`` of its points (by event time) are the training
span: training windows end inside it, validation windows start after it, and windows that
straddle the cut are dropped so no point is in both splits.

Examples
--------
>>> import numpy as np
>>> from streamgen.records import Position, Record
>>> recs = [Record("a", t, np.array([float(t)]), Position("f", -1, t)) for t in range(10)]
>>> series = group_by_key(recs)
>>> scaler = KeyScaler.fit(series, train_fraction=0.8)
>>> w = make_windows(series, scaler, length=4)
>>> w.x.shape, w.rows[0].tolist(), w.rows[-1].tolist()
((7, 4, 1), [0, 1, 2, 3], [6, 7, 8, 9])
>>> tr, va = split_by_time(series, w, val_fraction=0.2)
>>> tr.tolist(), va.tolist()
([0, 1, 2, 3, 4], [])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streamgen.records import Record


@dataclass
class KeyHistory:
    """One key's points in event-time order (ties keep input order)."""

    key: str
    rows: np.ndarray  # (n,) int64 input row numbers
    ts_ms: np.ndarray  # (n,) int64
    values: np.ndarray  # (n, C) float64
    labels: np.ndarray  # (n,) int64, -1 where unlabelled

    def __len__(self) -> int:
        return len(self.rows)


def group_by_key(records: Iterable[Record]) -> list[KeyHistory]:
    """Group records by key (keys in order of first appearance), each sorted by event time."""
    buckets: dict[str, list[Record]] = {}
    for r in records:
        buckets.setdefault(r.key, []).append(r)
    out = []
    for key, recs in buckets.items():
        rows = np.array([r.position.offset for r in recs], dtype=np.int64)
        ts = np.array([r.ts_ms for r in recs], dtype=np.int64)
        order = np.lexsort((rows, ts))
        out.append(
            KeyHistory(
                key=key,
                rows=rows[order],
                ts_ms=ts[order],
                values=np.stack([recs[i].values for i in order]).astype(np.float64),
                labels=np.array(
                    [-1 if recs[i].label is None else recs[i].label for i in order], np.int64
                ),
            )
        )
    return out


def train_cut(n: int, train_fraction: float) -> int:
    """Number of leading points of an ``n``-point key that form its training span (≥ 1)."""
    return max(1, min(n, int(np.floor(n * train_fraction))))


@dataclass
class KeyScaler:
    """Per-key, per-channel mean and std fitted on each key's training span."""

    keys: list[str]
    mean: np.ndarray  # (K, C)
    std: np.ndarray  # (K, C)
    clip: float = 20.0

    @classmethod
    def fit(
        cls,
        series: list[KeyHistory],
        train_fraction: float = 0.8,
        min_std: float = 1e-6,
        clip: float = 20.0,
    ) -> KeyScaler:
        means, stds = [], []
        for s in series:
            head = s.values[: train_cut(len(s), train_fraction)]
            means.append(head.mean(0))
            stds.append(np.maximum(head.std(0), min_std))
        return cls([s.key for s in series], np.stack(means), np.stack(stds), clip)

    def transform(self, k: int, values: np.ndarray) -> np.ndarray:
        """Raw ``(..., C)`` values of key index ``k`` → clipped z-units, float32."""
        z = (values - self.mean[k]) / self.std[k]
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def inverse(self, k: int, z: np.ndarray) -> np.ndarray:
        """z-units of key index ``k`` → raw units."""
        return z * self.std[k] + self.mean[k]

    def state(self) -> dict[str, object]:
        """Plain-types form for checkpoints (loads under ``weights_only=True``)."""
        return {
            "keys": list(self.keys),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip": self.clip,
        }

@dataclass
class WindowSet:
    """Windows ``x`` ``(N, W, C)`` with, per window, its key index, start and input rows."""

    x: np.ndarray  # (N, W, C) float32, normalized
    rows: np.ndarray  # (N, W) int64 input row numbers covered by each window
    key_index: np.ndarray  # (N,) int64 index into the series list
    start: np.ndarray  # (N,) int64 position of the first point within its key


def make_windows(
    series: list[KeyHistory], scaler: KeyScaler, length: int, stride: int = 1
) -> WindowSet:
    """Cut every key into windows of ``length`` points every ``stride`` points.

    Keys shorter than ``length`` give no window (they are scored as one short sequence).
    """
    xs, rows, keys, starts = [], [], [], []
    for k, s in enumerate(series):
        if len(s) < length:
            continue
        z = scaler.transform(scaler.keys.index(s.key), s.values)
        st = np.arange(0, len(s) - length + 1, stride)
        idx = st[:, None] + np.arange(length)[None, :]  # (n_win, W)
        xs.append(z[idx])
        rows.append(s.rows[idx])
        keys.append(np.full(len(st), k, dtype=np.int64))
        starts.append(st.astype(np.int64))
    if not xs:
        c = series[0].values.shape[1] if series else 0
        return WindowSet(
            np.zeros((0, length, c), np.float32),
            np.zeros((0, length), np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    return WindowSet(
        np.concatenate(xs), np.concatenate(rows), np.concatenate(keys), np.concatenate(starts)
    )


def split_by_time(
    series: list[KeyHistory], windows: WindowSet, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation windows (straddling windows belong to neither)."""
    w = windows.x.shape[1]
    cuts = np.array([train_cut(len(s), 1.0 - val_fraction) for s in series], dtype=np.int64)
    cut = cuts[windows.key_index] if len(windows.key_index) else np.zeros(0, np.int64)
    train = np.flatnonzero(windows.start + w <= cut)
    val = np.flatnonzero(windows.start >= cut)
    return train, val
