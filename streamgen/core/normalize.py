"""Online per-key scaling: exponentially weighted mean and variance, robust to outliers.

Each key (slot) keeps an EW mean and variance per channel with half-life
``normalize.half_life`` points. A point does not update its key's statistics when its
``|z|`` under the current statistics exceeds ``normalize.freeze_z`` on any channel, or when the
key is currently flagged anomalous: the very points we are looking for must not become the
new normal. Early on (fewer than ``min_points``), every point updates the statistics so that
a new key warms up quickly. After ``max_rejected`` outliers in a row (a level that moved for
good, not an anomaly, flagged or not; any other point ends the run), the key's statistics
start again from the next point, as the calibrator's do after as many flagged windows in a row.

Examples
--------
>>> import numpy as np
>>> from streamgen.config import NormalizeConfig
>>> n = Normalizer(NormalizeConfig(half_life=10), n_channels=1)
>>> n.ensure(1)
>>> for v in [1.0, 2.0, 3.0, 2.0, 1.0, 2.0]:
...     _ = n.update(0, np.array([v]))
>>> round(float(n.mean[0, 0]), 2), int(n.count[0])
(1.83, 6)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgen.config import NormalizeConfig
from streamgen.core.calibrate import MAX_FLAGGED_RUN

# Up to this many channels, fold() works on Python floats, above on numpy arrays: for a few
# channels, a dozen numpy calls on 1-element arrays cost ~6x more than the arithmetic itself.
_SCALAR_CHANNELS = 8


class Normalizer:
    """Per-slot EW mean/variance; ``normalize`` maps raw windows to clipped z-units.

    The standard deviation is kept next to the variance (``sd``) and refreshed on update:
    the engine reads it for every record, and recomputing a square root per read was a
    visible share of its per-record loop.
    """

    min_points = 8
    # Consecutive outliers after which the statistics restart: the calibrator's run limit,
    # so that both give up on an "anomaly" that lasts this long.
    max_rejected = MAX_FLAGGED_RUN

    def __init__(self, cfg: NormalizeConfig, n_channels: int) -> None:
        self.cfg = cfg
        self.n_channels = n_channels
        self.alpha = 1.0 - 0.5 ** (1.0 / cfg.half_life)
        self.mean = np.zeros((0, n_channels))
        self.var = np.zeros((0, n_channels))
        self.sd = np.zeros((0, n_channels))
        self.count = np.zeros(0, dtype=np.int64)
        self.rejected = np.zeros(0, dtype=np.int64)  # points kept out in a row
        self._min_var = cfg.min_std**2

    def ensure(self, n_slots: int) -> None:
        """Grow arrays to at least ``n_slots`` slots."""
        pad = n_slots - len(self.count)
        if pad > 0:
            C = self.n_channels
            self.mean = np.concatenate([self.mean, np.zeros((pad, C))])
            self.var = np.concatenate([self.var, np.zeros((pad, C))])
            self.sd = np.concatenate([self.sd, np.full((pad, C), self.cfg.min_std)])
            self.count = np.concatenate([self.count, np.zeros(pad, np.int64)])
            self.rejected = np.concatenate([self.rejected, np.zeros(pad, np.int64)])

    def reset(self, slot: int) -> None:
        self.mean[slot] = 0.0
        self.var[slot] = 0.0
        self.sd[slot] = self.cfg.min_std
        self.count[slot] = 0
        self.rejected[slot] = 0

    def std(self, slot: int) -> np.ndarray:
        """The slot's standard deviation per channel (a copy: safe to keep as a snapshot)."""
        return self.sd[slot].copy()

    def zscore(self, slot: int, x: np.ndarray) -> np.ndarray:
        """z of raw values ``x`` (``(..., C)``) under the slot's current statistics."""
        if self.count[slot] == 0:
            return np.zeros_like(x)
        return (x - self.mean[slot]) / self.sd[slot]

    def update(self, slot: int, x: np.ndarray, frozen: bool = False) -> bool:
        """Fold a point into the statistics unless it is an outlier; True if folded."""
        n = int(self.count[slot])
        if n >= self.min_points:
            sd = self.sd[slot]
            if (np.abs(x - self.mean[slot]) > self.cfg.freeze_z * sd).any():
                # An outlier: kept out; a run of them long enough is a level that moved.
                self.rejected[slot] += 1
                if self.rejected[slot] >= self.max_rejected:
                    self.reset(slot)  # start again from the next point
                return False
            self.rejected[slot] = 0
            if frozen:  # the key is flagged: hold the statistics
                return False
        # Plain averaging while young (alpha too small to forget the start), EW after.
        a = max(self.alpha, 1.0 / (n + 1)) if n else 1.0
        mean = self.mean[slot]  # a view: updated in place
        d = x - mean
        mean += a * d
        self.var[slot] = (1.0 - a) * (self.var[slot] + a * d * d)
        self.sd[slot] = np.sqrt(np.maximum(self.var[slot], self._min_var))
        self.count[slot] = n + 1
        return True

    def fold(
        self, seg_slot: np.ndarray, fresh: np.ndarray, frozen: np.ndarray, live: np.ndarray,
        seg_len: np.ndarray, x: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Fold a batch's points into the statistics, segment by segment, as :meth:`update`
        would one point at a time.

        ``x`` holds the points ``(n, C)`` grouped by segment (``seg_len[s]`` points of segment
        ``s`` in a row, in time order). A segment continues its slot's statistics, or starts
        from none when ``fresh``; ``frozen`` segments take no points once warm. Only ``live``
        segments (the slot's last) write their statistics back.

        Returns ``(mean, std)`` of each point's key *before* the point and *after* it, each
        ``(n, C)``.
        """
        S, C = len(seg_slot), self.n_channels
        n = len(x)
        bounds = np.concatenate([[0], np.cumsum(seg_len)]).tolist()
        carried = ~fresh
        c_slot = seg_slot[carried]
        mean0 = np.zeros((S, C))
        var0 = np.zeros((S, C))
        sd0 = np.full((S, C), self.cfg.min_std)
        count0 = np.zeros(S, np.int64)
        rej0 = np.zeros(S, np.int64)
        mean0[carried], var0[carried] = self.mean[c_slot], self.var[c_slot]
        sd0[carried], count0[carried] = self.sd[c_slot], self.count[c_slot]
        rej0[carried] = self.rejected[c_slot]
        means, vars_, sds = mean0.tolist(), var0.tolist(), sd0.tolist()
        counts, rejs, frz = count0.tolist(), rej0.tolist(), frozen.tolist()
        mb: list[Any] = [None] * n
        sb: list[Any] = [None] * n
        ma: list[Any] = [None] * n
        sa: list[Any] = [None] * n
        if C == 1:
            step, xs = self._fold_one, x[:, 0].tolist()
        elif C <= _SCALAR_CHANNELS:
            step, xs = self._fold_scalar, x.tolist()
        else:
            step, xs = self._fold_vector, list(x)
        for s in range(S):
            state = step(xs, bounds[s], bounds[s + 1], means[s], vars_[s], sds[s], counts[s],
                         rejs[s], frz[s], mb, sb, ma, sa)
            means[s], vars_[s], sds[s], counts[s], rejs[s] = state
        out = tuple(np.array(v, np.float64).reshape(n, C) for v in (mb, sb, ma, sa))
        if len(live):
            ls = seg_slot[live]
            self.mean[ls] = np.array([means[s] for s in live.tolist()], np.float64)
            self.var[ls] = np.array([vars_[s] for s in live.tolist()], np.float64)
            self.sd[ls] = np.array([sds[s] for s in live.tolist()], np.float64)
            self.count[ls] = np.array([counts[s] for s in live.tolist()], np.int64)
            self.rejected[ls] = np.array([rejs[s] for s in live.tolist()], np.int64)
        return out  # type: ignore[return-value]

    def _fold_one(
        self, xs: list, lo: int, hi: int, m: list, v: list, sd: list, k: int, r: int,
        frozen: bool, mb: list, sb: list, ma: list, sa: list,
    ) -> tuple[list, list, list, int, int]:
        # _fold_scalar for one channel, on bare floats (xs, and the snapshots written to
        # mb, sb, ma, sa, hold floats, not one-element lists): a third of its time, and
        # most streams have one channel.
        alpha, fz, min_var, minp = self.alpha, self.cfg.freeze_z, self._min_var, self.min_points
        sqrt, max_r = math.sqrt, self.max_rejected
        mc, vc, sc = m[0], v[0], sd[0]
        for i in range(lo, hi):
            x = xs[i]
            mb[i] = mc
            sb[i] = sc
            if k >= minp:
                if abs(x - mc) > fz * sc:  # kept out; a run of them: a level that moved
                    r += 1
                    if r >= max_r:  # start again from the next point (as reset() does)
                        mc, vc, sc, k, r = 0.0, 0.0, self.cfg.min_std, 0, 0
                    ma[i] = mc
                    sa[i] = sc
                    continue
                r = 0
                if frozen:
                    ma[i] = mc
                    sa[i] = sc
                    continue
            a = max(alpha, 1.0 / (k + 1)) if k else 1.0
            d = x - mc
            vc = (1.0 - a) * (vc + a * d * d)
            mc = mc + a * d
            sc = sqrt(max(vc, min_var))
            k += 1
            ma[i] = mc
            sa[i] = sc
        return [mc], [vc], [sc], k, r

    def _fold_scalar(
        self, xs: list, lo: int, hi: int, m: list, v: list, sd: list, k: int, r: int,
        frozen: bool, mb: list, sb: list, ma: list, sa: list,
    ) -> tuple[list, list, list, int, int]:
        # The arithmetic of update() on Python floats, one segment at a time; the lists
        # m, v, sd are replaced on every fold, never changed, so snapshots can share them.
        alpha, fz, min_var, minp = self.alpha, self.cfg.freeze_z, self._min_var, self.min_points
        sqrt, max_r, C = math.sqrt, self.max_rejected, self.n_channels
        for i in range(lo, hi):
            xi = xs[i]
            mb[i], sb[i] = m, sd
            fold = True
            if k >= minp:
                outlier = False
                for xc, mc, sc in zip(xi, m, sd, strict=True):
                    if abs(xc - mc) > fz * sc:
                        outlier = True
                        break
                if outlier:  # kept out; a run of them long enough is a level that moved
                    fold = False
                    r += 1
                else:
                    r = 0
                    fold = not frozen
            if fold:
                a = max(alpha, 1.0 / (k + 1)) if k else 1.0
                nm, nv, ns = [], [], []
                for xc, mc, vc in zip(xi, m, v, strict=True):
                    d = xc - mc
                    vv = (1.0 - a) * (vc + a * d * d)
                    nm.append(mc + a * d)
                    nv.append(vv)
                    ns.append(sqrt(max(vv, min_var)))
                m, v, sd = nm, nv, ns
                k += 1
            elif r >= max_r:  # start again from the next point (as reset() does)
                m, v, sd, k, r = [0.0] * C, [0.0] * C, [self.cfg.min_std] * C, 0, 0
            ma[i], sa[i] = m, sd
        return m, v, sd, k, r

    def _fold_vector(
        self, xs: list, lo: int, hi: int, m: list, v: list, sd: list, k: int, r: int,
        frozen: bool, mb: list, sb: list, ma: list, sa: list,
    ) -> tuple[list, list, list, int, int]:
        # Many channels: the arithmetic of update() on arrays.
        mean, var, std = np.array(m), np.array(v), np.array(sd)
        C = self.n_channels
        for i in range(lo, hi):
            x = xs[i]
            mb[i], sb[i] = mean, std
            if k >= self.min_points:
                if (np.abs(x - mean) > self.cfg.freeze_z * std).any():
                    r += 1  # an outlier, kept out; a long run of them: a level that moved
                    if r >= self.max_rejected:  # start again from the next point
                        mean, var, std = np.zeros(C), np.zeros(C), np.full(C, self.cfg.min_std)
                        k, r = 0, 0
                    ma[i], sa[i] = mean, std
                    continue
                r = 0
                if frozen:
                    ma[i], sa[i] = mean, std
                    continue
            a = max(self.alpha, 1.0 / (k + 1)) if k else 1.0
            d = x - mean
            mean = mean + a * d
            var = (1.0 - a) * (var + a * d * d)
            std = np.sqrt(np.maximum(var, self._min_var))
            k += 1
            ma[i], sa[i] = mean, std
        return mean.tolist(), var.tolist(), std.tolist(), k, r

    def normalize(self, slot: int, window: np.ndarray) -> np.ndarray:
        """Map a raw ``(W, C)`` window into clipped z-units as float32."""
        z = self.zscore(slot, window)
        return np.clip(z, -self.cfg.clip, self.cfg.clip).astype(np.float32)

    def state_dict(self, slots: np.ndarray) -> dict[str, Any]:
        import torch

        return {
            "mean": torch.from_numpy(self.mean[slots].copy()),
            "var": torch.from_numpy(self.var[slots].copy()),
            "count": torch.from_numpy(self.count[slots].copy()),
            "rejected": torch.from_numpy(self.rejected[slots].copy()),
        }

    def load_state_dict(self, state: dict[str, Any], slots: list[int]) -> None:
        self.ensure(max(slots, default=-1) + 1)
        for i, s in enumerate(slots):
            self.mean[s] = state["mean"][i].numpy()
            self.var[s] = state["var"][i].numpy()
            self.sd[s] = np.sqrt(np.maximum(self.var[s], self._min_var))
            self.count[s] = int(state["count"][i])
            # Checkpoints written before the restart rule carry no run: start it at 0.
            self.rejected[s] = int(state["rejected"][i]) if "rejected" in state else 0
