"""Evaluation report: ``metrics.json`` and PNG plots written into one directory.

Plots (matplotlib, Agg canvas; matplotlib is imported only when a report is written):

* ``series_<n>_<key>.png``: actual values of each key (the ranked score when no actual input
  is given), labelled anomaly ranges shaded (a one-row anomaly too: at least
  :data:`MIN_SHADE_FRACTION` of the x-range wide), flagged rows marked; every key up to
  ``max_keys``, beyond that the ones with the most labelled rows, as each title and
  ``metrics.json`` (``report.keys_note``) say;
* ``score_<n>_<key>.png``: the ranked score column on top (``calibrated`` by default), then the
  other of ``calibrated`` / raw ``score`` when present, robust y-ranges, same shading and marks.
  The ``threshold`` column is ``calibrate.threshold`` (the engine flags
  ``calibrated >= threshold``), so it is drawn on the calibrated panel only: the raw score has
  no threshold on its scale.  Only a file without a calibrated column gets it on the ``score``
  panel, since there it can refer to nothing else;
* y-ranges are robust (:func:`robust_ylim`): a few extreme values are drawn as triangles at
  the edge and counted in a note instead of flattening the rest;
* ``continuations.png``: a few forecasts (past the key's cold start, with every step's actual
  row there to compare: :func:`pick_continuations`) against the actual rows and the naive
  forecasts, with
  the band forecast ± 2 spread shaded when the continuations carry a spread (for Gaussian
  errors of that std, 95.4 % of the actual points fall inside it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from streamgen.core.jsonsafe import write_json
from streamgen.evaluation.detection import segments
from streamgen.evaluation.forecast import ActualSeries, JoinedForecasts

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["KeySeries", "pick_continuations", "robust_ylim", "shade_labels", "write_report"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class KeySeries:
    """Scored rows of one key, in input order; optional arrays are ``None`` when unknown.

    ``score`` is the ranked column, named ``score_column``; ``raw_score`` and ``calibrated``
    are the ``score`` and ``calibrated`` columns (either may be the ranked array itself).
    ``threshold`` is the ``threshold`` column, ``calibrate.threshold``: calibrated scale.
    """

    key: str
    ts_ms: NDArray[np.int64]
    score: FloatArray
    threshold: FloatArray | None = None
    calibrated: FloatArray | None = None
    labels: NDArray[np.bool_] | None = None
    detections: NDArray[np.bool_] | None = None
    actual: ActualSeries | None = None
    score_column: str = "score"
    raw_score: FloatArray | None = None


def _safe_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "key"
    return name[:60]


def _figure(rows: int, cols: int = 1, height: float = 3.0) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _dates(ts_ms: NDArray[np.int64]) -> FloatArray:
    from matplotlib import dates as mdates

    return np.asarray(mdates.date2num(np.asarray(ts_ms, dtype="datetime64[ms]")), dtype=float)


def _time_axis(ax: Axes) -> None:
    from matplotlib import dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


#: A labelled segment is drawn at least this share of the x-range wide (about 4 pixels of an
#: 11-inch plot): a one-row anomaly, half a sampling step each side, was invisible.
MIN_SHADE_FRACTION = 1 / 250


def shade_labels(ax: Axes, x: FloatArray, labels: NDArray[np.bool_] | None) -> None:
    """Shade labelled segments, half a sampling step wider on each side and never narrower
    than :data:`MIN_SHADE_FRACTION` of the x-range, so that a one-row anomaly shows."""
    if labels is None or x.size == 0 or not labels.any():
        return
    step = float(np.median(np.diff(x))) if x.size > 1 else 0.0
    min_width = (float(x[-1] - x[0]) + step) * MIN_SHADE_FRACTION
    for i, (s, e) in enumerate(segments(labels)):
        lo, hi = x[s] - step / 2, x[e - 1] + step / 2
        if hi - lo < min_width:
            mid = (lo + hi) / 2
            lo, hi = mid - min_width / 2, mid + min_width / 2
        ax.axvspan(
            lo, hi, color="tab:orange", alpha=0.3, lw=0,
            label="labelled anomaly" if i == 0 else None,
        )  # fmt: skip


def _mark(ax: Axes, x: FloatArray, y: FloatArray, detections: NDArray[np.bool_] | None) -> None:
    if detections is None or not detections.any():
        return
    ax.scatter(x[detections], y[detections], s=14, c="tab:red", zorder=3, label="flagged")


def _plot_series(path: Path, ks: KeySeries, title: str) -> Path:
    fig = _figure(1)
    ax = fig.add_subplot()
    x = _dates(ks.ts_ms)
    if ks.actual is not None and ks.actual.ts_ms.size:
        xa = _dates(ks.actual.ts_ms)
        n_ch = ks.actual.values.shape[1]
        for c in range(min(n_ch, 4)):
            ax.plot(xa, ks.actual.values[:, c], lw=0.8, label=f"channel {c}")
        # flagged rows are marked on channel 0 at the nearest actual row
        if ks.detections is not None and ks.detections.any():
            idx = np.clip(np.searchsorted(ks.actual.ts_ms, ks.ts_ms[ks.detections]), 0, None)
            idx = np.minimum(idx, ks.actual.ts_ms.size - 1)
            ax.scatter(
                xa[idx], ks.actual.values[idx, 0], s=14, c="tab:red", zorder=3, label="flagged"
            )
        shown = ks.actual.values[:, : min(n_ch, 4)]
        robust_ylim(ax, shown.reshape(-1), x=np.repeat(xa, shown.shape[1]))
        ax.set_ylabel("value" + (" (channels 0-3)" if n_ch > 4 else ""))
    else:
        ax.plot(x, ks.score, lw=0.8, label=ks.score_column)
        _mark(ax, x, ks.score, ks.detections)
        robust_ylim(ax, ks.score, x=x)
        ax.set_ylabel(f"{ks.score_column} (no actual input given)")
    shade_labels(ax, x, ks.labels)
    _time_axis(ax)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    fig.savefig(path, dpi=100)
    return path


#: Values beyond the 0.5-99.5 % percentile range by more than this many times that range are
#: drawn at the edge of the plot (a few huge warm-up scores flattened everything else); an
#: anomaly's score a few times the normal range stays in view.
CLIP_MARGIN = 3.0


def robust_ylim(
    ax: Axes, values: FloatArray, extra: FloatArray | None = None, x: FloatArray | None = None
) -> None:
    """Keep rare huge values from flattening the plot: values beyond the 0.5-99.5 %
    percentile range (``extra``, e.g. the threshold, included) by more than
    :data:`CLIP_MARGIN` times that range are drawn as triangles at the edge and counted in a
    note; the y-range covers every other value."""
    finite = np.isfinite(values)
    v = values[finite]
    if v.size < 20:
        return
    lo, hi = (float(q) for q in np.percentile(v, [0.5, 99.5]))
    if extra is not None and np.isfinite(extra).any():
        lo, hi = min(lo, float(np.nanmin(extra))), max(hi, float(np.nanmax(extra)))
    span = max(hi - lo, 1e-12)
    bottom, top = lo - CLIP_MARGIN * span, hi + CLIP_MARGIN * span
    above, below = finite & (values > top), finite & (values < bottom)
    if not (above.any() or below.any()):
        return
    kept = values[finite & ~above & ~below]  # the y-range: every value not clipped
    lo, hi = min(lo, float(kept.min())), max(hi, float(kept.max()))
    pad = 0.05 * max(hi - lo, 1e-12)
    bottom, top = lo - pad, hi + pad
    ax.set_ylim(bottom, top)
    parts = []
    for mask, edge, marker, word, f in ((above, top, "^", "above", np.max),
                                         (below, bottom, "v", "below", np.min)):  # fmt: skip
        if mask.any():
            if x is not None:
                ax.scatter(x[mask], np.full(int(mask.sum()), edge), marker=marker, s=18,
                           c="0.3", zorder=4, clip_on=False)  # fmt: skip
            parts.append(f"{int(mask.sum())} {word} (extreme {f(values[mask]):.4g})")
    ax.text(
        0.99, 0.03, "clipped y-axis (triangles): " + ", ".join(parts), transform=ax.transAxes,
        ha="right", va="bottom", fontsize="small", color="0.2",
        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
    )  # fmt: skip


def _score_panels(ks: KeySeries) -> list[tuple[str, FloatArray, FloatArray | None]]:
    """``(name, values, threshold or None)`` per panel of the score plot, ranked column first.

    The threshold goes only where it is on the panel's scale: with ``calibrated``, or with
    the raw ``score`` of a file that has no calibrated column at all.

    Examples
    --------
    >>> one, thr = np.ones(3), np.full(3, 4.0)
    >>> ks = KeySeries("k", np.arange(3), one, thr, one, score_column="calibrated",
    ...                raw_score=2 * one)
    >>> [(name, t is not None) for name, _, t in _score_panels(ks)]
    [('calibrated', True), ('score', False)]
    >>> ks = KeySeries("k", np.arange(3), 2 * one, thr, one, raw_score=2 * one)
    >>> [(name, t is not None) for name, _, t in _score_panels(ks)]
    [('score', False), ('calibrated', True)]
    """
    cal_name, raw_name = "calibrated", "score"
    by_name = {cal_name: ks.calibrated, raw_name: ks.raw_score}
    thr_on = cal_name if ks.calibrated is not None else raw_name
    panels: list[tuple[str, FloatArray, FloatArray | None]] = []
    for name, values in ((ks.score_column, ks.score), *by_name.items()):
        if values is None or any(name == p[0] for p in panels):
            continue
        if panels and not np.isfinite(values).any():
            continue  # an empty secondary panel says nothing
        panels.append((name, values, ks.threshold if name == thr_on else None))
    return panels


def _plot_score(path: Path, ks: KeySeries, title: str) -> Path:
    panels = _score_panels(ks)
    fig = _figure(len(panels))
    x = _dates(ks.ts_ms)
    for row, (name, values, thr) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, row + 1)
        ax.plot(x, values, lw=0.8, label=f"{name} (ranked)" if row == 0 else name)
        if thr is not None and np.isfinite(thr).any():
            ax.step(x, thr, where="post", lw=1.0, ls="--", c="k", label="threshold")
        _mark(ax, x, values, ks.detections)
        shade_labels(ax, x, ks.labels)
        robust_ylim(ax, values, thr, x=x)
        _time_axis(ax)
        ax.set_ylabel(name)
        ax.legend(loc="upper left", fontsize="small")
    fig.axes[0].set_title(f"anomaly score: {title}, ranked by {ks.score_column!r}")
    fig.savefig(path, dpi=100)
    return path


def pick_continuations(
    joined: JoinedForecasts, actuals: Mapping[str, ActualSeries], max_windows: int
) -> NDArray[np.int64]:
    """Continuations worth a panel: every forecast step has an actual point to compare (not
    the end of the stream), past the key's start (at least three horizons of history and a
    fifth of its rows: not the cold start), spread over keys and over time.

    Falls back to continuations with a full horizon anywhere, then to any comparable one.
    """
    horizon = joined.forecast.shape[1]
    mask = joined.common_mask()[:, :, 0]
    full = mask.all(axis=1)
    n_rows = np.array([actuals[k].ts_ms.size for k in joined.keys], dtype=np.int64)
    warm = joined.anchor >= np.maximum(3 * horizon, n_rows // 5)
    for ok in (full & warm, full, mask.any(axis=1)):
        usable = np.flatnonzero(ok)
        if usable.size:
            break
    else:
        return np.zeros(0, dtype=np.int64)
    by_key: dict[str, list[int]] = {}
    for i in usable.tolist():
        by_key.setdefault(joined.keys[i], []).append(i)
    keys = list(by_key)
    per_key = -(-max_windows // len(keys))
    picked: list[tuple[int, int]] = []  # (rank within its key, continuation)
    for k in keys:
        rows = by_key[k]
        m = min(per_key, len(rows))  # the middles of m equal stretches of the key's rows
        take = ((np.arange(m) + 0.5) * len(rows) / m).astype(int)
        picked.extend((rank, rows[j]) for rank, j in enumerate(take.tolist()))
    # each key's first pick before any key's second, so the panels show as many keys as fit
    chosen = [i for _, i in sorted(picked)[:max_windows]]
    return np.array(sorted(chosen), dtype=np.int64)


def _plot_continuations(
    path: Path,
    joined: JoinedForecasts,
    actuals: Mapping[str, ActualSeries],
    max_windows: int,
) -> Path | None:
    pick = pick_continuations(joined, actuals, max_windows)
    if pick.size == 0:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure(len(pick), height=2.6)
    horizon = joined.forecast.shape[1]
    for row, i in enumerate(pick):
        ax = fig.add_subplot(len(pick), 1, row + 1)
        series = actuals[joined.keys[i]]
        a = int(joined.anchor[i])
        lo = max(0, a - 3 * horizon)
        hist = series.values[lo : a + 1, 0]
        ax.plot(np.arange(lo - a, 1), hist, c="0.3", lw=1.0, marker=".", ms=3, label="observed")
        steps = np.arange(1, horizon + 1)
        if joined.spread is not None and np.isfinite(joined.spread[i, :, 0]).any():
            f, sd = joined.forecast[i, :, 0], joined.spread[i, :, 0]
            ax.fill_between(
                steps, f - 2 * sd, f + 2 * sd, color="tab:blue", alpha=0.15, lw=0,
                label="model ± 2 spread",
            )  # fmt: skip
        ax.plot(steps, joined.actual[i, :, 0], c="k", lw=1.5, marker=".", label="actual")
        ax.plot(steps, joined.forecast[i, :, 0], c="tab:blue", lw=1.5, marker=".", label="model")
        ax.plot(
            steps, joined.naive["last_value"][i, :, 0], c="tab:gray", ls=":", label="last value"
        )
        ax.plot(
            steps, joined.naive["seasonal_naive"][i, :, 0], c="tab:green", ls="--", label="seasonal"
        )
        ax.axvline(0.5, c="0.6", lw=0.8)
        ts = np.datetime64(int(joined.ts_ms[i]), "ms")
        ax.set_title(
            f"key {joined.keys[i]!r}, forecast after {ts} (row {a + 1} of "
            f"{series.ts_ms.size}), channel 0",
            fontsize="small",
        )
        ax.set_xlabel("rows after the forecast's time (0 = last observed row)")
        ax.set_ylabel("value")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if row == 0:
            ax.legend(loc="upper left", fontsize="small", ncol=6)
    fig.savefig(path, dpi=100)
    return path


def write_report(
    out_dir: Path,
    metrics: dict[str, Any],
    series: Sequence[KeySeries] = (),
    joined: JoinedForecasts | None = None,
    actuals: Mapping[str, ActualSeries] | None = None,
    max_keys: int = 8,
    max_windows: int = 4,
) -> list[Path]:
    """Write the plots and ``metrics.json`` into ``out_dir`` (created); return written paths.

    Every key is plotted up to ``max_keys``; beyond, the ``max_keys`` with the most labelled
    rows (input order on ties), and the selection is said on each plot and in
    ``metrics["report"]`` (``keys_note``), which this adds before writing ``metrics.json``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)

    def n_labelled(ks: KeySeries) -> int:
        return 0 if ks.labels is None else int(ks.labels.sum())

    ranked = sorted(range(len(series)), key=lambda i: (-n_labelled(series[i]), i))
    shown = ranked[:max_keys]
    if len(shown) < len(series):
        note = (f"plots show {len(shown)} of {len(series)} keys: the {len(shown)} with the "
                "most labelled rows")  # fmt: skip
    else:
        note = f"plots show all {len(series)} keys" if series else ""
    plots: list[Path] = []
    for n, i in enumerate(shown):
        ks = series[i]
        stem = f"{n}_{_safe_name(ks.key)}"
        title = f"key {ks.key!r} ({n + 1} of {len(shown)} plotted"
        title += f", of {len(series)} keys)" if len(shown) < len(series) else ")"
        plots.append(_plot_series(out_dir / f"series_{stem}.png", ks, title))
        plots.append(_plot_score(out_dir / f"score_{stem}.png", ks, title))
    if joined is not None and actuals is not None and joined.forecast.shape[0]:
        path = _plot_continuations(out_dir / "continuations.png", joined, actuals, max_windows)
        if path is not None:
            plots.append(path)
    metrics_path = out_dir / "metrics.json"
    metrics["report"] = {
        "dir": str(out_dir),
        "metrics": str(metrics_path),
        "plots": [p.name for p in plots],
        "keys_plotted": [series[i].key for i in shown],
        "keys_total": len(series),
        "keys_note": note,
    }
    return [write_json(metrics_path, metrics), *plots]
