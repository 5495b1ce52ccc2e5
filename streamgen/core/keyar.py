"""Per-key linear autoregression of the continuation, fitted online in closed form.

The online models are shared by every key; from a 32-point window they learn what windows
of all keys have in common, not each key's own dynamics. On the benchmark suite their own
continuations were no better than the better of last-value and seasonal-naive (1.0x), while a
least-squares fit of each key's next ``H`` points on its last ``p`` (offline, per key) erred
half as much. So, as hybrid forecasters do (ES-RNN: per-series exponential smoothing with a
global network), each key keeps its own ridge regression, updated in closed form:

* per key, the Gram matrix ``G = Σ λ^age x xᵀ`` and cross term ``R = Σ λ^age x yᵀ`` of lag
  vectors ``x`` (the ``p`` points before a span's future, and 1) and futures ``y`` (``H``
  points), over every new span without a flagged point, in the key's normalized units;
  channels share the coefficients and count as separate samples;
* coefficients ``B = (G + αI)⁻¹ (R + α B₀)``: shrunk toward a last-value forecast ``B₀``, so a
  new key forecasts its last value and moves to its own fit as spans arrive.

The engine emits this forecast as the continuation, read from the window as the model's own
forecast head reads it (each point pulled to within ``robust_limit`` of the model's
reconstruction). Mixing it with the model's continuation per key (inverse mean-squared-error
weights, tracked as the points arrived) forecast worse than this alone on the benchmark
suite (0.65x vs 0.61x the best naive forecast, MLP, quick suite), as the network's
continuation alone did (0.87x).

Each key's residual RMS per step (from the same statistics, plus ``Σy²``) is the
continuation's ``spread``.

State per key: ``(p+1)(p+2)/2 + 2(p+1)·H + 2H + 2`` float32 values (the statistics, the last
solved coefficients and spread: 1107 for p=32, H=8, 4.4 kB).

Examples
--------
>>> import numpy as np
>>> ar = KeyAR(order=4, horizon=2, forget=1.0, ridge=1e-3)
>>> ar.ensure(1)
>>> t = np.arange(200.0)
>>> x = np.sin(t / 5)
>>> spans = np.stack([x[i : i + 6] for i in range(190)])[:, :, None]  # (n, p + H, C=1)
>>> ar.update(np.zeros(190, np.int64), spans)
>>> fc = ar.forecast(np.zeros(1, np.int64), x[194:198][None, :, None])
>>> np.allclose(fc[0, :, 0], x[198:200], atol=1e-3)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Keys solved per call in :meth:`KeyAR.forecast` (bounds its temporaries).
_SOLVE_CHUNK = 1024
# Spans a slot takes in before its coefficients are solved again.
_REFRESH = 8
# The per-slot arrays a checkpoint carries.
_STATE = ("gram", "cross", "coefs", "age", "yy", "weight", "sigma")


class KeyAR:
    """Per-slot ridge autoregressions of order ``order`` forecasting ``horizon`` points.

    ``gram`` keeps the upper triangle of each symmetric Gram matrix, row by row (``d(d+1)/2``
    values for ``d = order + 1``), which halves the largest per-key array.
    """

    def __init__(self, order: int, horizon: int, forget: float, ridge: float) -> None:
        self.p, self.H = order, horizon
        self.forget, self.ridge = forget, ridge
        d = order + 1
        self._iu = np.triu_indices(d)
        self.gram = np.zeros((0, len(self._iu[0])), np.float32)
        self.cross = np.zeros((0, d, horizon), np.float32)
        # Per slot: decayed sum of squared futures per step and of sample weights (for the
        # residual spread), the coefficients and residual RMS per step last solved, and how
        # many spans arrived since.
        self.yy = np.zeros((0, horizon), np.float32)
        self.weight = np.zeros(0, np.float32)
        self.coefs = np.zeros((0, d, horizon), np.float32)
        self.sigma = np.ones((0, horizon), np.float32)
        self.age = np.zeros(0, np.int32)
        prior = np.zeros((d, horizon))
        prior[order - 1] = 1.0  # last value
        self._last_value = prior.astype(np.float32)
        self._prior = ridge * prior
        self._ridge_eye = ridge * np.eye(d)

    @property
    def n_slots(self) -> int:
        return len(self.gram)

    def ensure(self, n_slots: int) -> None:
        pad = n_slots - self.n_slots
        if pad > 0:
            d = self.p + 1
            tri = self.gram.shape[1]
            self.gram = np.concatenate([self.gram, np.zeros((pad, tri), np.float32)])
            self.cross = np.concatenate([self.cross, np.zeros((pad, d, self.H), np.float32)])
            fresh = np.broadcast_to(self._last_value, (pad, d, self.H))
            self.coefs = np.concatenate([self.coefs, fresh])
            self.yy = np.concatenate([self.yy, np.zeros((pad, self.H), np.float32)])
            self.weight = np.concatenate([self.weight, np.zeros(pad, np.float32)])
            self.sigma = np.concatenate([self.sigma, np.ones((pad, self.H), np.float32)])
            self.age = np.concatenate([self.age, np.zeros(pad, np.int32)])

    def reset(self, slots: np.ndarray | int) -> None:
        self.gram[slots] = 0.0
        self.cross[slots] = 0.0
        self.coefs[slots] = self._last_value  # what the empty statistics solve to
        self.yy[slots] = 0.0
        self.weight[slots] = 0.0
        self.sigma[slots] = 1.0
        self.age[slots] = 0

    # -- fitting -------------------------------------------------------------------------
    def update(self, slots: np.ndarray, spans: np.ndarray) -> None:
        """Fold spans ``(n, >= p + H, C)`` (normalized; the last ``H`` points are the
        future) into their slots' statistics; a slot's older statistics decay by
        ``forget`` per span."""
        n = len(slots)
        if not n:
            return
        p, iu = self.p, self._iu
        order = np.argsort(slots, kind="stable")
        ss = slots[order]
        starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
        uniq, cnt = ss[starts], np.diff(np.r_[starts, n])
        tail = spans[order, -(p + self.H) :].astype(np.float32)
        x = np.concatenate([tail[:, :p], np.ones((n, 1, tail.shape[2]), np.float32)], axis=1)
        y = tail[:, p:]
        # Per span, the packed upper triangle of x xT and x yT, summed over channels (each
        # channel is a sample), then summed per slot.
        g = (x[:, iu[0]] * x[:, iu[1]]).sum(-1)  # (n, T)
        r = (x[:, :, None, :] * y[:, None, :, :]).sum(-1)  # (n, d, H)
        yy = (y * y).sum(-1)  # (n, H)
        if len(uniq) < n:
            g = np.add.reduceat(g, starts, axis=0)
            r = np.add.reduceat(r.reshape(n, -1), starts, axis=0).reshape(len(uniq), p + 1, -1)
            yy = np.add.reduceat(yy, starts, axis=0)
        decay = (self.forget ** cnt).astype(np.float32)
        self.gram[uniq] = self.gram[uniq] * decay[:, None] + g
        self.cross[uniq] = self.cross[uniq] * decay[:, None, None] + r
        self.yy[uniq] = self.yy[uniq] * decay[:, None] + yy
        self.weight[uniq] = self.weight[uniq] * decay + cnt * tail.shape[2]
        self.age[uniq] += cnt.astype(np.int32)

    def coef(self, slots: np.ndarray) -> np.ndarray:
        """Ridge coefficients ``(len(slots), p + 1, H)`` solved from the statistics now."""
        return self._solve(slots)[0]

    def _solve(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients, and the residual RMS of each step ``(len(slots), H)`` over the
        slot's spans: ``sqrt((Σy² - 2bᵀr + bᵀGb + 1) / (n + 1))``, one pseudo-sample of
        variance 1 (the key's normalized scale) keeping a new key's spread wide."""
        d = self.p + 1
        g = np.empty((len(slots), d, d))
        packed = self.gram[slots]
        g[:, self._iu[0], self._iu[1]] = packed
        g[:, self._iu[1], self._iu[0]] = packed
        r = self.cross[slots].astype(np.float64)
        b = np.linalg.solve(g + self._ridge_eye, r + self._prior)
        rss = self.yy[slots] - 2 * (b * r).sum(1) + (b * (g @ b)).sum(1)
        sigma = np.sqrt((np.maximum(rss, 0.0) + 1.0) / (self.weight[slots, None] + 1.0))
        return b, sigma

    def forecast(self, slots: np.ndarray, lags: np.ndarray) -> np.ndarray:
        """Continuations ``(n, H, C)`` of windows whose last ``p`` points are ``lags[:, -p:]``
        (normalized, ``(n, >= p, C)``).

        A slot's coefficients are solved again once ``_REFRESH`` spans arrived since the last
        solve: one 33x33 solve costs ~20 us, which with many keys (one window each per
        batch) was as much as the rest of the loop; coefficients of ~500 spans of memory
        move little in 8.
        """
        if not len(slots):
            return np.zeros((0, self.H, lags.shape[2]), np.float32)
        uniq = np.unique(slots)
        due = uniq[self.age[uniq] >= _REFRESH]
        # In chunks: a batch with a window for each of 8192 keys would otherwise hold
        # several (8192, p + 1, p + 1) float64 temporaries (~70 MB each at p = 32).
        for i in range(0, len(due), _SOLVE_CHUNK):
            part = due[i : i + _SOLVE_CHUNK]
            self.coefs[part], self.sigma[part] = self._solve(part)
        self.age[due] = 0
        b = self.coefs[slots]  # (n, p + 1, H)
        x = lags[:, -self.p :].transpose(0, 2, 1)  # (n, C, p)
        fc = x @ b[:, : self.p] + b[:, self.p][:, None, :]  # (n, C, H)
        return fc.transpose(0, 2, 1).astype(np.float32)

    def spread(self, slots: np.ndarray) -> np.ndarray:
        """Residual RMS ``(n, H)`` of each step's forecast (normalized), as of the last
        solve: a per-key spread of the continuation."""
        return self.sigma[slots]

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self, slots: np.ndarray) -> dict[str, Any]:
        import torch

        return {name: torch.from_numpy(getattr(self, name)[slots].copy()) for name in _STATE}

    def load_state_dict(self, state: dict[str, Any], slots: list[int]) -> None:
        self.ensure(max(slots, default=-1) + 1)
        idx = np.asarray(slots, np.int64)
        if state["gram"].shape[1:] != self.gram.shape[1:] or state["cross"].shape[2] != self.H:
            # Written with another order or horizon: start these keys' fits afresh.
            self.reset(idx)
            return
        for name in _STATE:
            getattr(self, name)[idx] = state[name].numpy()
