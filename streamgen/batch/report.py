"""Backfill report: ``report.json`` (numbers) and ``report.png`` (three panels).

Panels: training curve (held-out metric per epoch), calibrated scores of the busiest key over
time with the threshold and flagged rows, and real vs synthetic windows of channel 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_png(
    path: str | Path,
    history: list[dict[str, float]],
    ts_ms: np.ndarray,
    calibrated: np.ndarray,
    flagged: np.ndarray,
    threshold: float,
    real: np.ndarray,
    synthetic: np.ndarray,
    title: str,
) -> None:
    """Draw the three report panels; ``real``/``synthetic`` are ``(N, W, C)`` windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if history:
        ax.plot([r["epoch"] + 1 for r in history], [r["val"] for r in history], marker="o")
    ax.set(title="held-out metric per epoch", xlabel="epoch", ylabel="val (lower is better)")
    ax = axes[1]
    if len(ts_ms):
        t = (ts_ms - ts_ms[0]) / 1000.0
        ax.plot(t, calibrated, lw=0.8)
        ax.axhline(threshold, color="tab:red", ls="--", lw=0.8, label="threshold")
        ax.scatter(t[flagged], calibrated[flagged], color="tab:red", s=10, label="flagged")
        ax.legend(loc="upper right")
    ax.set(title="calibrated score (busiest key)", xlabel="seconds", ylabel="robust z")
    ax = axes[2]
    for i, w in enumerate(real[:5]):
        ax.plot(w[:, 0], color="tab:red", alpha=0.6, label="real" if i == 0 else None)
    for i, w in enumerate(synthetic[:5]):
        ax.plot(w[:, 0], color="tab:blue", alpha=0.6, label="synthetic" if i == 0 else None)
    ax.set(title="windows, channel 0", xlabel="step")
    if len(real) or len(synthetic):
        ax.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
