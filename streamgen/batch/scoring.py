"""Score every point of a key's history, then calibrate per key.

**Row score.** Every window of ``W`` points (stride 1) gets per-point scores from the model
(VAE: point negative log-likelihood; GAN: reconstruction + feature residual + critic term). A
row's score is the mean over all windows that contain it, so each point is judged with
context on both sides (this is hindsight scoring of history; the online engine scores
prequentially). A key with fewer than ``W`` points is scored as one shorter sequence: the
recurrent models accept any length. A row is ``warm`` once ``W`` points of its key have been
seen, as in the streaming engine.

**Calibration.** ``calibrated = (score - median) / (1.4826 * MAD)`` with median and MAD from the
key's *training span*: a robust z, comparable across keys, so one threshold
(``calibrate.threshold``) serves all. Robust statistics because the history being scored
contains the very anomalies we look for.

Examples
--------
>>> import numpy as np
>>> s = np.r_[np.random.default_rng(0).normal(size=200), 50.0]
>>> z = robust_z(s, s[:200])
>>> bool(z[-1] > 20), bool(abs(np.median(z[:200])) < 1e-9)
(True, True)
"""

from __future__ import annotations

import numpy as np
import torch

from streamgen.batch.checkpoint import BatchModel

# Floor on the MAD relative to the median's magnitude, so a perfectly constant training span
# does not turn every tiny deviation into an infinite z.
_REL_MAD_FLOOR = 1e-6


@torch.no_grad()
def score_points(
    model: BatchModel,
    z: np.ndarray,
    length: int,
    device: torch.device,
    batch_windows: int = 512,
) -> np.ndarray:
    """Per-row scores ``(n,)`` of one key's normalized points ``z`` ``(n, C)``."""
    n = len(z)
    if n == 0:
        return np.zeros(0)
    if n <= length:
        _, point = model.score(torch.from_numpy(z[None].astype(np.float32)).to(device))
        return point[0].double().cpu().numpy()
    sums, counts = np.zeros(n), np.zeros(n)
    starts = np.arange(n - length + 1)
    offsets = np.arange(length)
    for lo in range(0, len(starts), batch_windows):
        idx = starts[lo : lo + batch_windows, None] + offsets[None, :]  # (B, W)
        x = torch.from_numpy(z[idx].astype(np.float32)).to(device)
        _, point = model.score(x)  # (B, W)
        np.add.at(sums, idx, point.double().cpu().numpy())
        np.add.at(counts, idx, 1.0)
    return sums / counts


def robust_z(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Robust z of ``scores`` against ``reference``: ``(s - median) / (1.4826 * MAD)``."""
    ref = reference[np.isfinite(reference)]
    if len(ref) == 0:
        return np.zeros_like(scores)
    med = float(np.median(ref))
    mad = 1.4826 * float(np.median(np.abs(ref - med)))
    if mad <= 0.0:
        mad = float(ref.std())
    mad = max(mad, _REL_MAD_FLOOR * max(abs(med), 1.0))
    return (scores - med) / mad


def sanitize(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace non-finite scores by the largest finite one (they are the worst fits).

    Returns the cleaned scores and how many were replaced (reported, never hidden).
    """
    bad = ~np.isfinite(scores)
    if not bad.any():
        return scores, 0
    finite = scores[~bad]
    fill = float(finite.max()) if len(finite) else 0.0
    return np.where(bad, fill, scores), int(bad.sum())
