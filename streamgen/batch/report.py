"""Backfill report: ``report.png`` (three panels; ``report.json`` is written with
:func:`streamgen.core.jsonsafe.write_json`).

Panels: training curve (held-out metric per epoch), calibrated scores of the busiest key
(named) over time with the threshold, flagged rows and labelled rows shaded, on a robust
y-axis, and real vs synthetic windows of channel 0.
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
    key: str = "",
    labels: np.ndarray | None = None,
    n_keys: int = 1,
) -> None:
    """Draw the three report panels; ``real``/``synthetic`` are ``(N, W, C)`` windows.

    The score panel shows ``key`` (the key with the most rows, of ``n_keys``), its labelled
    rows shaded when the input has labels, on a robust y-axis (a few extreme scores are
    marked at the edge and counted instead of flattening the rest): the plotting rules of
    ``streamgen evaluate``'s report.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamgen.evaluation.report import robust_ylim, shade_labels

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if history:
        ax.plot([r["epoch"] + 1 for r in history], [r["val"] for r in history], marker="o")
    ax.set(title="held-out metric per epoch", xlabel="epoch", ylabel="val (lower is better)")
    ax = axes[1]
    if len(ts_ms):
        t = (ts_ms - ts_ms[0]) / 1000.0
        ax.plot(t, calibrated, lw=0.8, label="calibrated score")
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax.scatter(t[flagged], calibrated[flagged], color="tab:red", s=10, zorder=3,
                   label="flagged")  # fmt: skip
        if labels is not None:
            shade_labels(ax, t, np.asarray(labels, dtype=bool))
        robust_ylim(ax, np.asarray(calibrated, dtype=np.float64), np.array([threshold]), x=t)
        ax.legend(loc="upper left", fontsize="small")
    which = f"key {key!r}" + (f", the busiest of {n_keys}" if n_keys > 1 else "")
    ax.set(title=f"calibrated score, {which}", xlabel="seconds since the key's first row",
           ylabel="robust z")  # fmt: skip
    ax = axes[2]
    for i, w in enumerate(real[:5]):
        ax.plot(w[:, 0], color="tab:red", alpha=0.6, label="real" if i == 0 else None)
    for i, w in enumerate(synthetic[:5]):
        ax.plot(w[:, 0], color="tab:blue", alpha=0.6, label="synthetic" if i == 0 else None)
    ax.set(title="windows, channel 0", xlabel="step", ylabel="value")
    if len(real) or len(synthetic):
        ax.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
