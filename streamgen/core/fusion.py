"""One anomaly score per record, on one scale from a key's first point on.

The ``score`` of a record fuses per-key calibrated evidence from up to five detectors
(``calibrate.detectors``):

* ``model``: the model's raw score of the window ending at the record (reconstruction and
  forecast error), once the model is trained (``model.warmup_steps``);
* ``forecast``: the squared error of the continuation made earlier for this point (the
  key's own autoregression, :mod:`streamgen.core.keyar`), from the key's second window on;
* ``point``: the point's squared z under the key's running statistics (the normalizer's);
* ``diff``: the squared first difference ``x_t - x_{t-1}`` in the same units;
* ``shape``: the window's Mahalanobis distance from the key's own past windows
  (:mod:`streamgen.core.shape`), once the key has enough of them; one detector per scale
  (``shape``, ``shape1``, ...: the whole window, its last half, ...).

Each detector has its own per-key :class:`~streamgen.core.calibrate.Calibrator` (z of the
cube root of its raw score under EW statistics). A calibrated value that rests on few past
values deserves less trust than the same value on thousands: it is mapped to the normal
quantile of the same tail probability under Student's t with ``n - 1`` degrees of freedom
(Wallace's approximation; a z of 8 after 5 values counts as 3.1, after 100 values as 7.0,
after thousands as 8). The fused score is the largest of these tail-equivalent z values, so
a cold row (a new key, an untrained model) sits on the same scale as a warm one, and one
threshold (``calibrate.threshold``) means the same tail probability for every row, key and
detector. A value over the threshold stays out of its detector's statistics (protect the
baseline); each detector judges that for itself, so that one that fires often on some
series does not freeze the others.

Examples
--------
>>> round(tail_z(8.0, 5), 1), round(tail_z(8.0, 100), 1), round(tail_z(8.0, 100_000), 1)
(3.1, 7.0, 8.0)
>>> tail_z(-2.0, 50) < 0
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgen.config import CalibrateConfig
from streamgen.core.calibrate import Calibrator

COMPONENTS = ("model", "forecast", "point", "diff", "shape")


def tail_z(z: float, n: int, n_max: float = math.inf) -> float:
    """The normal quantile whose tail probability equals that of ``z`` under Student's t for
    a new value after ``n`` past ones (``n - 1`` degrees of freedom, at most ``n_max - 1``:
    EW statistics remember about ``n_max`` values); 0 for ``n < 2``."""
    if n < 2:
        return 0.0
    n_eff = min(float(n), n_max)
    nu = n_eff - 1.0
    # The predictive spread of a new value is sd * sqrt(1 + 1/n).
    t = z / math.sqrt(1.0 + 1.0 / n_eff)
    # Wallace (1959): within 0.02 of the exact quantile for nu >= 4, 0.15 for nu = 1.
    zq = (8.0 * nu + 1.0) / (8.0 * nu + 3.0) * math.sqrt(nu * math.log1p(t * t / nu))
    return zq if t >= 0 else -zq


class Fusion:
    """Per-slot calibrators of the detectors and the fused, tail-equivalent score.

    ``cals[name]`` is the detector's :class:`Calibrator`, in the order of :attr:`names`
    (:data:`COMPONENTS`, the shape detector once per scale); the engine's model calibrator
    is ``cals["model"]``. Detectors not in ``cfg.detectors`` keep no statistics.
    """

    def __init__(self, cfg: CalibrateConfig, shape_scales: int = 1) -> None:
        self.cfg = cfg
        shapes = ["shape"] + [f"shape{i}" for i in range(1, shape_scales)]
        self.names = (*COMPONENTS[:-1], *shapes)
        #: Index of the first shape column in :attr:`names` (and in the engine's raw scores).
        self.shape_from = len(COMPONENTS) - 1
        self.cals = {name: Calibrator(cfg) for name in self.names}
        kinds = ["shape" if n.startswith("shape") else n for n in self.names]
        self.active = tuple(k in cfg.detectors for k in kinds)
        # Detectors that score a record only when no active one can (a key's first points).
        self.fallback = tuple(k in cfg.fallback and k not in cfg.detectors for k in kinds)
        self.threshold = self.cals["model"].threshold
        self._zscore = cfg.method != "quantile"
        self._stouffer = cfg.fusion == "stouffer"
        # Effective memory of the EW statistics (values).
        self._n_max = 2.0 / self.cals["model"].alpha
        # (index in names, calibrator, fallback?) of the detectors that keep statistics;
        # the others are skipped outright (and hold no per-slot state).
        self._used = tuple(
            (i, c, fb) for i, (c, on, fb) in enumerate(zip(self.cals.values(), self.active,
                                                          self.fallback, strict=True))
            if on or fb
        )
        # The model calibrator keeps state even when the model is not a detector: the
        # engine reads its count for the rows' warm flag, and checkpoints carry it.
        self._kept = tuple(dict.fromkeys([self.cals["model"], *(c for _, c, _ in self._used)]))

    def ensure(self, n_slots: int) -> None:
        for c in self._kept:
            c.ensure(n_slots)

    def reset(self, slot: int) -> None:
        for c in self._kept:
            c.reset(slot)

    def begin(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Open a micro-batch on ``slots``: until :meth:`end`, :meth:`judge` and
        :meth:`reset` (and the calibrators) take local slot indices (:meth:`Calibrator.begin`).
        Returns the distinct slots (local index ``i`` is ``distinct[i]``) and each element's
        local index."""
        uniq, local = np.unique(slots, return_inverse=True)
        for c in self._kept:
            c.begin(uniq)
        return uniq, local

    def end(self) -> None:
        for c in self._kept:
            c.end()

    def judge(
        self, slot: int, raws: list[float | None], mute_from: int | None = None
    ) -> tuple[float, float, bool, float | None]:
        """Fuse the raw scores of :attr:`names` (None: not available for this record) of one
        record of ``slot`` and fold each into its detector's statistics unless that
        detector flags it. Detectors from index ``mute_from`` on count in the ranking score
        but not in the alerting value (the engine mutes the shape detector while a flagged
        point is still in its window). Returns ``(score, alerting value, flagged,
        model_calibrated)``; the last is the model's own calibrated value (None without a
        model score)."""
        stop = len(raws) if mute_from is None else mute_from
        alerting: list[float] = []
        muted: list[float] = []
        spare: list[float] = []  # fallback detectors' values
        model_cal = None
        for i, c, fb in self._used:
            raw = raws[i]
            if raw is None:
                continue
            z = c.calibrate(slot, raw)
            if self._zscore:
                z = tail_z(z, int(c.count[slot]), self._n_max)
            elif c.count[slot] < self.cfg.warmup_windows:
                z = 0.0
            if i == 0:
                model_cal = z
            # Each detector protects its own statistics: a detector that fires often on
            # some series must not freeze the others' baselines.
            c.commit(slot, raw, z >= self.threshold)
            (spare if fb else alerting if i < stop else muted).append(z)
        if not (alerting or muted):
            if not spare:
                return 0.0, 0.0, False, None
            alerting = spare
        score = self._fuse(alerting + muted)
        alert = score if not muted else (self._fuse(alerting) if alerting else 0.0)
        return score, alert, alert >= self.threshold, model_cal

    def _fuse(self, zs: list[float]) -> float:
        return sum(zs) / math.sqrt(len(zs)) if self._stouffer else max(zs)

    def state_dict(self, slots: Any) -> dict[str, Any]:
        return {name: c.state_dict(slots) for name, c in self.cals.items()
                if name != "model" and c in self._kept}

    def load_state_dict(self, state: dict[str, Any] | None, slots: list[int]) -> None:
        """Restore the calibrators but the model's (restored on its own);
        checkpoints written before fusion carry none: those start fresh."""
        self.ensure(max(slots, default=-1) + 1)
        for name, c in self.cals.items():
            if name == "model" or c not in self._kept:
                continue
            if state and name in state:
                c.load_state_dict(state[name], slots)
            else:
                for s in slots:
                    c.reset(s)


__all__ = ["COMPONENTS", "Fusion", "tail_z"]
