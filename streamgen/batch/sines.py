"""TimeGAN's *sines* data set: independent sinusoids with random frequency and phase.

Yoon, Jarrett & van der Schaar (2019), "Time-series Generative Adversarial Networks", use it
as the first benchmark: each of ``dim`` channels is ``sin(f * t + p)`` with ``f`` and ``p``
drawn uniformly from ``[0, 0.1)``, rescaled to ``[0, 1]``, over ``seq_len = 24`` steps.

:func:`fit_sines` inverts it: the frequency and phase of the closest such sinusoid to each
channel of each window, and how far the window is from it (``benchmarks/diag_sines.py``
uses it to tell what a discriminator sees in generated sines).

Examples
--------
>>> x = sine_data(4, seed=0)
>>> x.shape, bool(x.min() >= 0.0), bool(x.max() <= 1.0)
((4, 24, 5), True, True)
>>> f, p, rmse = fit_sines(x)
>>> f.shape, bool(rmse.max() < 1e-4)
((4, 5), True)
"""

from __future__ import annotations

import numpy as np

#: The range ``f`` and ``p`` are drawn from (TimeGAN's recipe); :func:`fit_sines` searches
#: a wider one.
PARAM_RANGE = (0.0, 0.1)


def in_param_range(v: np.ndarray) -> np.ndarray:
    """Elementwise: whether fitted ``f`` or ``p`` values lie in :data:`PARAM_RANGE`."""
    lo, hi = PARAM_RANGE
    return (v >= lo) & (v < hi)


def sine_data(n: int, seq_len: int = 24, dim: int = 5, seed: int | None = 0) -> np.ndarray:
    """Generate ``n`` sine sequences of shape ``(seq_len, dim)`` as float32 ``(n, T, C)``.

    Parameters
    ----------
    n
        Number of sequences.
    seq_len
        Steps per sequence (TimeGAN: 24).
    dim
        Channels per step (TimeGAN: 5).
    seed
        Seed of the random frequencies and phases.
    """
    rng = np.random.default_rng(seed)
    freq = rng.uniform(*PARAM_RANGE, size=(n, 1, dim))
    phase = rng.uniform(*PARAM_RANGE, size=(n, 1, dim))
    t = np.arange(seq_len, dtype=np.float64).reshape(1, seq_len, 1)
    return ((np.sin(freq * t + phase) + 1.0) * 0.5).astype(np.float32)


def fit_sines(
    x: np.ndarray, f_step: float = 2e-3, p_step: float = 4e-3, chunk: int = 512, refine: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest ``(sin(f t + p) + 1) / 2`` to every channel of windows ``x`` ``(N, T, C)``.

    A grid search over ``f`` in ``[-0.03, 0.13]`` and ``p`` in ``[-0.1, 0.2]`` (wider than
    the data set's ``[0, 0.1)``, so that samples outside it show as such) in steps of
    ``f_step`` and ``p_step``, then ``refine`` Gauss-Newton steps from the best grid point,
    so the fit is continuous, not the grid's. Returns ``f``, ``p`` and the root-mean-square
    distance to that sinusoid, each ``(N, C)``; on :func:`sine_data` they come back to float
    precision, so a distance well above ~1e-4 is a shape no sine of the set has.
    """
    n, t_len, c = x.shape
    fs = np.arange(-0.03, 0.13 + f_step / 2, f_step)
    ps = np.arange(-0.1, 0.2 + p_step / 2, p_step)
    t = np.arange(t_len, dtype=np.float64)
    basis = (np.sin(fs[:, None, None] * t + ps[None, :, None]) + 1.0) * 0.5
    basis = basis.reshape(-1, t_len).astype(np.float32)  # (F * P, T)
    b_sq = (basis**2).sum(1)
    y = np.ascontiguousarray(x.transpose(0, 2, 1).reshape(-1, t_len), dtype=np.float64)
    y32 = y.astype(np.float32)
    best = np.empty(len(y), dtype=np.int64)
    for i in range(0, len(y), chunk):
        # |y - b|² up to |y|², which is the same for every candidate
        best[i : i + chunk] = (b_sq[None, :] - 2.0 * y32[i : i + chunk] @ basis.T).argmin(1)
    f, p = fs[best // len(ps)], ps[best % len(ps)]
    for _ in range(refine):  # Gauss-Newton on (f, p), every curve at once
        arg = f[:, None] * t + p[:, None]
        r = (np.sin(arg) + 1.0) * 0.5 - y
        jp = 0.5 * np.cos(arg)
        jf = jp * t
        a, b, d = (jf * jf).sum(1) + 1e-12, (jf * jp).sum(1), (jp * jp).sum(1) + 1e-12
        gf, gp = (jf * r).sum(1), (jp * r).sum(1)
        det = a * d - b * b
        ok = det > 1e-12
        f = np.where(ok, f - (d * gf - b * gp) / np.where(ok, det, 1.0), f)
        p = np.where(ok, p - (a * gp - b * gf) / np.where(ok, det, 1.0), p)
    rmse = np.sqrt((((np.sin(f[:, None] * t + p[:, None]) + 1.0) * 0.5 - y) ** 2).mean(1))
    return f.reshape(n, c), p.reshape(n, c), rmse.reshape(n, c)
