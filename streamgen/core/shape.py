"""Per-key shape detector: how far a window's shape lies from the key's own past windows.

For each key, channel and *scale* (the last ``span`` points of the window, for each span of
``spans``), the windows the engine scores (in the key's normalized units) are block-averaged
down to ``dim`` points, and the key keeps the exponentially weighted mean and second moment of
those short vectors, over every clean span the model learns from. A window's raw shape score
at a scale is its Mahalanobis distance under that mean and covariance (ridge-regularized),
averaged over channels: a streaming, per-key form of the "Sub-PCA" detector (PCA on sliding
windows), which ranks among the best classical detectors on real labelled series. The whole
window sees a long shape coarsely, its last half a shorter one more finely.

Why next to the shared model: the model learns what windows of all keys have in common and
scores a window by how well it rebuilds it; a shape that is ordinary for other keys (or
cheap to rebuild) but unusual for *this* key goes unnoticed. On the real-data suite
(``streamgen bench --suite real``, 29 series, one seed) the whole window's distance alone
reached a mean VUS-PR of 0.346 against 0.264 for the model's score. But a window that holds
an anomaly stays far from normal for as long as the anomaly is in view, so the whole
window's distance kept flagging a window's length after every short anomaly. By default
(``recent = 1``) the score is only the newest block's share of the distance, given the
blocks before it (the distance splits exactly into such sequential terms): fused with the
model, 0.300 on the real suite with the synthetic suite as good as the model alone.

State per key: ``S * C * (2 dim + 2 * dim (dim + 1) / 2)`` float32 values plus a weight and
an age (304 values, 1.2 kB, per scale and channel for ``dim = 16``). The inverse Cholesky
factor used to score is refreshed every :data:`_REFRESH` spans a key takes in, as the
per-key fits are.

Examples
--------
>>> import numpy as np
>>> sh = KeyShape(window=32, n_channels=1, dim=8, forget=0.999, spans=(32,))
>>> sh.ensure(1)
>>> t = np.arange(4000)
>>> x = np.sin(2 * np.pi * t / 32)
>>> wins = np.lib.stride_tricks.sliding_window_view(x, 32)[:, :, None].astype(np.float32)
>>> sh.update(np.zeros(len(wins), np.int64), wins)
>>> odd = wins[:2].copy()
>>> odd[1, 10:20] = 2.0  # a plateau in one window
>>> s = sh.score(np.zeros(2, np.int64), odd)[:, 0]
>>> bool(s[1] > 10 * s[0])
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Spans a slot takes in before its inverse factor is computed again.
_REFRESH = 8
# Ridge added to the covariance's diagonal, in normalized units squared: keeps directions the
# key never varies in (a flat signal, clipped values) from turning rounding noise into huge
# distances. Small, because the informative directions are the ones a key hardly varies in:
# on the real-data suite 0.05 gave VUS-PR 0.302, 0.01 0.312, 0.001 0.333, 1e-4 0.335 (whole-
# window distance, one seed).
_RIDGE = 0.001
# Per-slot arrays a checkpoint carries.
_STATE = ("mean", "second", "weight", "age", "inv")


class KeyShape:
    """Per-slot EW mean and covariance of block-averaged windows, at each scale; Mahalanobis
    scores. Scales and channels share one axis of the state arrays (``S * C`` rows)."""

    def __init__(
        self, window: int, n_channels: int, dim: int, forget: float,
        spans: tuple[int, ...] | None = None, recent: int = 0,
    ) -> None:
        spans = spans or default_spans(window, dim)
        self.dim = max(1, min(dim, min(spans)))
        self.spans = tuple(min(s, window) for s in spans)
        self.blocks = tuple(s // self.dim for s in self.spans)
        self.window = window
        self.n_channels = n_channels
        self.forget = forget
        self.recent = min(max(0, recent), self.dim)  # 0: the whole window
        d, C = self.dim, n_channels * len(self.spans)
        self._iu = np.triu_indices(d)
        # The columns of L⁻ᵀ that the score reads (the newest ``recent`` blocks'): where
        # each of their upper-triangle elements sits in the packed vector, and its place
        # in a dense (d, k) slice of those columns.
        k = self.recent or d
        cols = self._iu[1] >= d - k
        self._score_src = np.flatnonzero(cols)
        self._score_dst = (self._iu[0][cols], self._iu[1][cols] - (d - k))
        p = len(self._iu[0])
        self.mean = np.zeros((0, C, d), np.float32)
        self.second = np.zeros((0, C, p), np.float32)
        self.inv = np.zeros((0, C, p), np.float32)  # packed inverse Cholesky factor (upper)
        self.ref = np.zeros((0, C, d), np.float32)  # the mean the factor was computed with
        self.weight = np.zeros(0, np.float32)
        self.age = np.zeros(0, np.int32)

    @property
    def n_slots(self) -> int:
        return len(self.weight)

    def ensure(self, n_slots: int) -> None:
        pad = n_slots - self.n_slots
        if pad <= 0:
            return
        for name in ("mean", "second", "inv", "ref"):
            a = getattr(self, name)
            setattr(self, name, np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]))
        self.weight = np.concatenate([self.weight, np.zeros(pad, np.float32)])
        self.age = np.concatenate([self.age, np.zeros(pad, np.int32)])

    def reset(self, slots: np.ndarray | int) -> None:
        for name in ("mean", "second", "inv", "ref", "weight", "age"):
            getattr(self, name)[slots] = 0

    @property
    def n_scales(self) -> int:
        return len(self.spans)

    def _reduce(self, windows: np.ndarray) -> np.ndarray:
        """``(B, W, C)`` windows → ``(B, S * C, dim)``: per scale, the block means of the
        window's last ``dim * block`` points, after a running median of three (which takes
        out isolated one-point outliers: a spike is the point detectors' business, and left
        in, it made every window that held it look misshapen for a whole window length)."""
        windows = median3(windows)
        B, C, d = len(windows), self.n_channels, self.dim
        parts = []
        for block in self.blocks:
            x = windows[:, self.window - d * block :, :]
            parts.append(x.reshape(B, d, block, C).mean(axis=2).transpose(0, 2, 1))
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def update(self, slots: np.ndarray, windows: np.ndarray) -> None:
        """Fold clean ``(n, W, C)`` windows (normalized) into their slots' statistics, in
        order; refresh the factors of slots that took :data:`_REFRESH` windows since."""
        if len(slots) == 0:
            return
        v = self._reduce(windows)  # (n, C, d)
        outer = (v[:, :, :, None] * v[:, :, None, :])[:, :, self._iu[0], self._iu[1]]
        # Decay per slot by the number of windows that follow in this batch: a window k places
        # from the end of its slot's run weighs forget**k, as one at a time.
        order = np.argsort(slots, kind="stable")
        s_sorted = slots[order]
        uniq, start, count = np.unique(s_sorted, return_index=True, return_counts=True)
        rank = np.arange(len(slots)) - np.repeat(start, count)
        after = np.repeat(count, count) - 1 - rank
        w = (self.forget ** after).astype(np.float32)
        decay = (self.forget**count).astype(np.float32)
        sum_w = np.add.reduceat(w, start)
        sum_v = np.add.reduceat(v[order] * w[:, None, None], start, axis=0)
        sum_o = np.add.reduceat(outer[order] * w[:, None, None], start, axis=0)
        old_w = self.weight[uniq] * decay
        new_w = old_w + sum_w
        self.mean[uniq] = (self.mean[uniq] * old_w[:, None, None] + sum_v) / new_w[:, None, None]
        self.second[uniq] = self.second[uniq] * decay[:, None, None] + sum_o
        self.weight[uniq] = new_w
        self.age[uniq] += count.astype(np.int32)
        due = uniq[(self.age[uniq] >= _REFRESH) | (self.ref[uniq] == 0).all(axis=(1, 2))]
        if len(due):
            self._refresh(due)

    def _refresh(self, slots: np.ndarray) -> None:
        d = self.dim
        n = len(slots)
        C = self.n_channels * self.n_scales
        sec = np.zeros((n, C, d, d), np.float64)
        sec[:, :, self._iu[0], self._iu[1]] = self.second[slots]
        sec = np.triu(sec) + np.triu(sec, 1).transpose(0, 1, 3, 2)
        w = np.maximum(self.weight[slots].astype(np.float64), 1e-12)[:, None, None, None]
        m = self.mean[slots].astype(np.float64)
        cov = sec / w - m[..., :, None] * m[..., None, :]
        cov += _RIDGE * np.eye(d)
        # cov = L Lᵀ; the score is |L⁻¹ (x - m)|², kept as the upper triangle of L⁻ᵀ.
        lower = np.linalg.cholesky(cov)
        inv = np.linalg.inv(lower)  # lower triangular
        self.inv[slots] = inv.transpose(0, 1, 3, 2)[:, :, self._iu[0], self._iu[1]]
        self.ref[slots] = self.mean[slots]
        self.age[slots] = 0

    def score(self, slots: np.ndarray, windows: np.ndarray, min_weight: float = 0.0) -> np.ndarray:
        """``(B, S)``: per scale, the mean over channels of each ``(B, W, C)`` window's
        squared Mahalanobis distance under its slot's statistics (with ``recent`` > 0: only
        the part of it due to the newest ``recent`` blocks, given the blocks before them);
        NaN for slots with less than ``max(min_weight, 2 dim)`` windows of weight."""
        B, d, S = len(slots), self.dim, self.n_scales
        out = np.full((B, S), np.nan)
        if B == 0:
            return out
        ready = self.weight[slots] >= max(min_weight, 2.0 * d)
        if not ready.any():
            return out
        s = slots[ready]
        x = self._reduce(windows[ready]) - self.ref[s]  # (b, C, d)
        # With L lower triangular and blocks oldest first, y = L⁻¹ x has y_j² = block j's
        # squared distance from what the blocks before it predict (the Mahalanobis distance
        # splits into these sequential terms): the last ``recent`` terms are the newest
        # blocks', y_j = sum_i L⁻ᵀ[i, j] x_i over those columns j of L⁻ᵀ only.
        k = self.recent or d
        u = np.zeros((len(s), S * self.n_channels, d, k), np.float32)
        u[:, :, self._score_dst[0], self._score_dst[1]] = self.inv[s][:, :, self._score_src]
        y = np.einsum("bcij,bci->bcj", u, x)
        dist = np.sum(y**2, axis=2).reshape(len(s), S, self.n_channels)
        out[ready] = dist.mean(axis=2)
        return out

    def state_dict(self, slots: np.ndarray) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(getattr(self, k)[slots].copy()) for k in (*_STATE, "ref")}

    def load_state_dict(self, state: dict[str, Any] | None, slots: list[int]) -> None:
        """Restore slots; a checkpoint without shape statistics (older, or another window
        or channel count) starts them afresh."""
        self.ensure(max(slots, default=-1) + 1)
        idx = np.asarray(slots, np.int64)
        fits = state is not None and tuple(state["mean"].shape[1:]) == self.mean.shape[1:]
        if not fits:
            self.reset(idx)
            return
        assert state is not None
        for k in (*_STATE, "ref"):
            getattr(self, k)[idx] = state[k].numpy()


def median3(x: np.ndarray) -> np.ndarray:
    """Running median of three along axis 1 of ``(B, W, C)`` (end points: median of their
    two neighbours and themselves, the missing neighbour taken as the point itself)."""
    prev = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
    nxt = np.concatenate([x[:, 1:], x[:, -1:]], axis=1)
    lo, hi = np.minimum(prev, x), np.maximum(prev, x)
    return np.maximum(lo, np.minimum(hi, nxt))


def default_spans(window: int, dim: int, scales: int = 2) -> tuple[int, ...]:
    """The whole window, then its last half, quarter, ... (``scales`` of them, none shorter
    than ``dim``)."""
    spans = [window]
    while len(spans) < scales and spans[-1] // 2 >= dim:
        spans.append(spans[-1] // 2)
    return tuple(spans)


__all__ = ["KeyShape", "default_spans", "median3"]
