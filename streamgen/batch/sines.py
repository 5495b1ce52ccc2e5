"""TimeGAN's *sines* data set: independent sinusoids with random frequency and phase.

Yoon, Jarrett & van der Schaar (2019), "Time-series Generative Adversarial Networks", use it
as the first benchmark: each of ``dim`` channels is ``sin(f * t + p)`` with ``f`` and ``p``
drawn uniformly from ``[0, 0.1)``, rescaled to ``[0, 1]``, over ``seq_len = 24`` steps.

Examples
--------
>>> x = sine_data(4, seed=0)
>>> x.shape, bool(x.min() >= 0.0), bool(x.max() <= 1.0)
((4, 24, 5), True, True)
"""

from __future__ import annotations

import numpy as np


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
    freq = rng.uniform(0.0, 0.1, size=(n, 1, dim))
    phase = rng.uniform(0.0, 0.1, size=(n, 1, dim))
    t = np.arange(seq_len, dtype=np.float64).reshape(1, seq_len, 1)
    return ((np.sin(freq * t + phase) + 1.0) * 0.5).astype(np.float32)
