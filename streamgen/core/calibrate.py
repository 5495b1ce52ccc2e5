"""Per-key calibration: raw reconstruction error → calibrated score, threshold, anomaly flag.

``zscore`` (default): the calibrated score is the z of ``score ** (1/3)`` under an EW mean and
variance of that key's past transformed scores (half-life ``calibrate.half_life`` windows).
Raw scores are sums of squared errors, close to scaled chi-square; the cube root makes such
variables nearly Gaussian (Wilson–Hilferty), so one threshold (``calibrate.threshold``, in
standard deviations) means the same thing for every key. (A log transform was tried first:
it stretches the near-zero left tail and compressed real outliers to z < 4.)

``quantile``: the calibrated score is ``score / q`` where ``q`` tracks the key's running
``calibrate.quantile`` of raw scores (stochastic-approximation quantile); anomalous when > 1.
The threshold is then 1.

Flagged windows do not update the statistics. A key is *warm* after ``warmup_windows``.

Examples
--------
>>> import numpy as np
>>> from streamgen.config import CalibrateConfig
>>> c = Calibrator(CalibrateConfig(warmup_windows=5))
>>> c.ensure(1)
>>> rng = np.random.default_rng(0)
>>> for s in rng.lognormal(0, 0.3, 200):
...     _ = c.observe(0, float(s))
>>> z, warm = c.observe(0, 50.0)
>>> bool(z > c.threshold), warm
(True, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgen.config import CalibrateConfig

_EPS = 1e-12


def _transform(score: float) -> float:
    return max(score, 0.0) ** (1.0 / 3.0)


class Calibrator:
    """Per-slot calibration state in flat arrays (arithmetic on Python floats: this runs once
    per scored window, and numpy scalar arithmetic cost several times more)."""

    def __init__(self, cfg: CalibrateConfig) -> None:
        self.cfg = cfg
        self.alpha = 1.0 - 0.5 ** (1.0 / cfg.half_life)
        self.threshold = cfg.threshold if cfg.method == "zscore" else 1.0
        self._quantile = cfg.method == "quantile"
        self.mu = np.zeros(0)
        self.var = np.zeros(0)
        self.count = np.zeros(0, dtype=np.int64)

    def ensure(self, n_slots: int) -> None:
        pad = n_slots - len(self.count)
        if pad > 0:
            self.mu = np.concatenate([self.mu, np.zeros(pad)])
            self.var = np.concatenate([self.var, np.zeros(pad)])
            self.count = np.concatenate([self.count, np.zeros(pad, np.int64)])

    def reset(self, slot: int) -> None:
        self.mu[slot] = 0.0
        self.var[slot] = 0.0
        self.count[slot] = 0

    def calibrate(self, slot: int, score: float) -> float:
        """Calibrated value of ``score`` under the slot's current state (no update)."""
        n = int(self.count[slot])
        mu = float(self.mu[slot])
        if self._quantile:
            return score / max(mu, _EPS) if n else 0.0
        if n < 2:
            return 0.0
        # A floor on the spread (relative to the typical level): keys with near-constant
        # error would otherwise turn tiny wiggles into huge z values.
        sd = max(math.sqrt(float(self.var[slot])), 0.05 * abs(mu), _EPS)
        return (_transform(score) - mu) / sd

    def update(self, slot: int, score: float) -> None:
        n = int(self.count[slot])
        a = max(self.alpha, 1.0 / (n + 1))
        if self._quantile:
            q = self.cfg.quantile
            if n == 0:
                self.mu[slot] = score
                self.var[slot] = abs(score) + _EPS
            else:
                # Robbins-Monro quantile step scaled by a running mean absolute deviation.
                mu, mad = float(self.mu[slot]), float(self.var[slot])
                mu += a * mad * (q - float(score <= mu)) / max(1 - q, q) * 2
                self.mu[slot] = mu
                self.var[slot] = mad + a * (abs(score - mu) - mad)
            self.count[slot] = n + 1
            return
        x = _transform(score)
        if n == 0:
            self.mu[slot] = x
            self.var[slot] = 0.0
        else:
            mu = float(self.mu[slot])
            d = x - mu
            self.mu[slot] = mu + a * d
            self.var[slot] = (1 - a) * (float(self.var[slot]) + a * d * d)
        self.count[slot] = n + 1

    def observe(self, slot: int, score: float, protect: bool = True) -> tuple[float, bool]:
        """Calibrate, then fold the score in unless it is anomalous. Returns (calibrated, warm)."""
        cal = self.calibrate(slot, score)
        warm = bool(self.count[slot] >= self.cfg.warmup_windows)
        if not (protect and warm and cal >= self.threshold):
            self.update(slot, score)
        return cal, warm

    def state_dict(self, slots: np.ndarray) -> dict[str, Any]:
        import torch

        return {
            "mu": torch.from_numpy(self.mu[slots].copy()),
            "var": torch.from_numpy(self.var[slots].copy()),
            "count": torch.from_numpy(self.count[slots].copy()),
        }

    def load_state_dict(self, state: dict[str, Any], slots: list[int]) -> None:
        self.ensure(max(slots, default=-1) + 1)
        for i, s in enumerate(slots):
            self.mu[s] = float(state["mu"][i])
            self.var[s] = float(state["var"][i])
            self.count[s] = int(state["count"][i])
