"""Fill gaps in a key's history by conditional generation.

A *gap* is either

* a **missing timestamp**: consecutive points further apart than 1.5 × the key's median
  spacing get points inserted at that spacing (at most ``max_gap_points`` per gap; longer
  outages are left alone and counted, since inventing hours of data helps nobody), or
* a **missing value**: a row dead-lettered for a missing/non-finite/non-numeric value whose
  key and time are readable (:class:`~streamgen.batch.history.PartialRow`); its readable
  channels are kept and conditioned on.

Every window (stride 1) that touches a gap is imputed by the model (``model.impute``: encode
→ decode → keep observed values, iterated), and each missing value is the mean of its
windows' fills: the same fill seen from several contexts.

Examples
--------
>>> import numpy as np
>>> g = build_grid("a", np.array([0, 10, 20, 50]), np.ones((4, 1)), np.arange(4),
...                max_gap_points=8)
>>> g.ts_ms.tolist(), g.source_row.tolist()
([0, 10, 20, 30, 40, 50], [0, 1, 2, -1, -1, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamgen.batch.checkpoint import BatchModel


@dataclass
class Grid:
    """A key's points on its time grid; ``values`` is NaN where missing."""

    key: str
    ts_ms: np.ndarray  # (M,) int64
    values: np.ndarray  # (M, C) float64, NaN = missing
    source_row: np.ndarray  # (M,) int64 input row, -1 for an inserted timestamp
    long_gaps: int = 0  # gaps longer than max_gap_points, not filled


def build_grid(
    key: str,
    ts_ms: np.ndarray,
    values: np.ndarray,
    rows: np.ndarray,
    max_gap_points: int = 64,
) -> Grid:
    """Sort points by time and insert missing timestamps at the median spacing."""
    order = np.lexsort((rows, ts_ms))
    ts, vals, src = ts_ms[order], values[order], rows[order]
    diffs = np.diff(ts)
    pos = diffs[diffs > 0]
    if len(pos) == 0:
        return Grid(key, ts, vals, src)
    step = float(np.median(pos))
    out_ts, out_v, out_r, long_gaps = [ts[:1]], [vals[:1]], [src[:1]], 0
    for i, d in enumerate(diffs):
        if d > 1.5 * step:
            k = int(round(d / step)) - 1
            if k > max_gap_points:
                long_gaps += 1
            elif k > 0:
                new_ts = ts[i] + np.round(np.arange(1, k + 1) * d / (k + 1)).astype(np.int64)
                out_ts.append(new_ts)
                out_v.append(np.full((k, vals.shape[1]), np.nan))
                out_r.append(np.full(k, -1, dtype=np.int64))
        out_ts.append(ts[i + 1 : i + 2])
        out_v.append(vals[i + 1 : i + 2])
        out_r.append(src[i + 1 : i + 2])
    return Grid(
        key, np.concatenate(out_ts), np.concatenate(out_v), np.concatenate(out_r), long_gaps
    )


@torch.no_grad()
def impute_points(
    model: BatchModel,
    z: np.ndarray,
    length: int,
    device: torch.device,
    batch_windows: int = 256,
) -> np.ndarray:
    """Fill the NaNs of normalized points ``z`` ``(M, C)``; observed values are unchanged."""
    missing = ~np.isfinite(z)
    if not missing.any():
        return z
    m = len(z)
    w = min(length, m)
    starts = np.arange(m - w + 1)
    offsets = np.arange(w)
    touched = np.flatnonzero(
        np.convolve(missing.any(1).astype(float), np.ones(w), mode="valid") > 0
    )
    starts = starts[touched]
    sums, counts = np.zeros_like(z, dtype=np.float64), np.zeros(m)
    for lo in range(0, len(starts), batch_windows):
        idx = starts[lo : lo + batch_windows, None] + offsets[None, :]  # (B, W)
        x = torch.from_numpy(np.nan_to_num(z[idx]).astype(np.float32)).to(device)
        mask = torch.from_numpy(~missing[idx]).to(device)
        filled = model.impute(x, mask).double().cpu().numpy()  # (B, W, C)
        np.add.at(sums, idx, filled)
        np.add.at(counts, idx, 1.0)
    fill = sums / np.maximum(counts, 1.0)[:, None]
    return np.where(missing, fill, z)


def linear_fill(values: np.ndarray) -> np.ndarray:
    """Per-channel linear interpolation of NaNs (a reference baseline for reports/tests)."""
    out = values.astype(np.float64).copy()
    t = np.arange(len(out))
    for c in range(out.shape[1]):
        ok = np.isfinite(out[:, c])
        if ok.any() and not ok.all():
            out[~ok, c] = np.interp(t[~ok], t[ok], out[ok, c])
    return out
