"""The five numbers that say how a detector did, for people (``streamgen evaluate``, the demo).

Of the labelled anomaly segments, how many got a flagged row (inside the segment or at most
:data:`GRACE_ROWS` rows after it: a point's score looks back over a window, so a flatline or
a drift shows a little late), how fast; how well the scores rank (PR-AUC next to what random
scores get, which is the label rate; ROC-AUC next to 0.5); and how many alerts an operator
would have got for nothing: runs of flagged rows of a key that start neither inside a
labelled segment nor within :data:`GRACE_ROWS` rows after one, per day of stream.

Rows of a key must be contiguous (``groups``), in time order; rows without a finite score
are left out first, as in :mod:`streamgen.evaluation.detection`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["GRACE_ROWS", "format_summary", "headline"]

#: A flagged row this many rows after a labelled segment still detects it (and is no false
#: alert); the demo's rule for its injected anomalies.
GRACE_ROWS = 8
_DAY_S = 86_400.0


def _bounds(n: int, groups: NDArray[Any] | None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Index of each row's group start and group end (exclusive)."""
    if groups is None or n == 0:
        return np.zeros(n, dtype=np.int64), np.full(n, n, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = groups[1:] != groups[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    which = np.cumsum(new) - 1
    return starts[which], ends[which]


def _runs(flags: NDArray[np.bool_], g_start: NDArray[np.int64]) -> tuple[NDArray[np.int64], ...]:
    """Start and end (exclusive) of each run of True rows, runs split at group starts."""
    n = flags.size
    idx = np.arange(n)
    prev = np.zeros(n, dtype=bool)
    prev[1:] = flags[:-1]
    begin = flags & (~prev | (idx == g_start))
    nxt = np.zeros(n, dtype=bool)
    nxt[:-1] = flags[1:]
    last = flags & (~nxt | (idx + 1 == np.append(g_start[1:], n)))
    return np.flatnonzero(begin), np.flatnonzero(last) + 1


def headline(
    scores: ArrayLike,
    labels: ArrayLike,
    detections: ArrayLike | None,
    timestamps_ms: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    roc_auc: float = float("nan"),
    pr_auc: float = float("nan"),
    grace_rows: int = GRACE_ROWS,
) -> dict[str, Any]:
    """The headline numbers (see the module docstring) as a flat dict.

    ``roc_auc`` and ``pr_auc`` are passed in (computed once, by the detection metrics);
    everything about flagged rows is ``None`` without ``detections``.

    Examples
    --------
    >>> h = headline([0, 0, 5, 0, 0, 4, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0],
    ...              [0, 0, 1, 0, 0, 0, 0, 1], timestamps_ms=[i * 3_600_000 for i in range(8)],
    ...              grace_rows=1)
    >>> h["segments"], h["segments_detected"], h["false_alerts"], h["false_alerts_per_day"]
    (1, 1, 1, 3.4285714285714284)
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    keep = np.isfinite(s)
    y = np.asarray(labels).reshape(-1).astype(bool)[keep]
    g = None if groups is None else np.asarray(groups).reshape(-1)[keep]
    ts = None if timestamps_ms is None else np.asarray(timestamps_ms, np.float64).reshape(-1)[keep]
    n = int(y.size)
    g_start, g_end = _bounds(n, g)
    seg_a, seg_b = _runs(y, g_start)
    out: dict[str, Any] = {
        "rows": n,
        "keys": 1 if g is None else int(len(np.unique(g))) if n else 0,
        "labelled_rows": int(y.sum()),
        "label_rate": float(y.mean()) if n else float("nan"),
        "segments": int(seg_a.size),
        "grace_rows": grace_rows,
        "pr_auc": pr_auc,
        "pr_auc_random": float(y.mean()) if n else float("nan"),
        "roc_auc": roc_auc,
        "roc_auc_random": 0.5,
        "span_seconds": None,
        "segments_detected": None,
        "detected_share": None,
        "ttd_median_rows": None,
        "ttd_median_seconds": None,
        "flagged_rows": None,
        "false_alerts": None,
        "false_alerts_per_day": None,
    }
    if ts is not None and n:
        out["span_seconds"] = float(ts.max() - ts.min()) / 1000.0
    if detections is None:
        return out
    d = np.asarray(detections).reshape(-1).astype(bool)[keep]
    csum = np.concatenate([[0], np.cumsum(d)])
    # A segment is detected by a flagged row in [start, min(end + grace, end of its key)).
    stop = np.minimum(seg_b + grace_rows, g_end[seg_a]) if seg_a.size else seg_b
    hit = csum[stop] - csum[seg_a] > 0
    flagged = np.flatnonzero(d)
    first = flagged[np.searchsorted(flagged, seg_a[hit])] if flagged.size else seg_a[hit]
    delay_rows = (first - seg_a[hit]).astype(np.float64)
    out["segments_detected"] = int(hit.sum())
    out["detected_share"] = float(hit.mean()) if hit.size else float("nan")
    out["flagged_rows"] = int(d.sum())
    if hit.any():
        out["ttd_median_rows"] = float(np.median(delay_rows))
        if ts is not None:
            out["ttd_median_seconds"] = float(np.median(ts[first] - ts[seg_a[hit]])) / 1000.0
    # False alerts: runs of flagged rows with no labelled row from grace rows before them on.
    ycs = np.concatenate([[0], np.cumsum(y)])
    run_a, run_b = _runs(d, g_start)
    lo = np.maximum(run_a - grace_rows, g_start[run_a]) if run_a.size else run_a
    false = ycs[run_b] - ycs[lo] == 0
    out["false_alerts"] = int(false.sum())
    span = out["span_seconds"]
    if span:
        out["false_alerts_per_day"] = out["false_alerts"] * _DAY_S / span
    return out


def _num(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _duration(seconds: float) -> str:
    if seconds >= 2 * _DAY_S:
        return f"{seconds / _DAY_S:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def format_summary(h: Mapping[str, Any], out: TextIO, indent: str = "  ") -> None:
    """The five summary lines of :func:`headline`'s dict."""
    no_flags = "- (the scores have no is_anomaly column)"
    if h["segments_detected"] is None:
        seg = no_flags
    elif h["segments"] == 0:
        seg = "- (no labelled anomaly)"
    else:
        seg = (f"{h['segments_detected']} / {h['segments']} ({100 * h['detected_share']:.0f} %)"
               f"   a flagged row inside a labelled segment or <= {h['grace_rows']} rows after")
    if h["false_alerts"] is None:
        fa = no_flags
    else:
        span = h["span_seconds"]
        per_day = h["false_alerts_per_day"]
        fa = f"{h['false_alerts']} in {_duration(span)}" if span else f"{h['false_alerts']}"
        if per_day is not None:
            fa += f" = {per_day:,.1f} per day"
        fa += f"   runs of flagged rows away from labelled segments, {h['keys']} keys together"
    if h["ttd_median_rows"] is None:
        ttd = "-" if h["segments_detected"] is not None else no_flags
    else:
        ttd = f"{_num(h['ttd_median_rows'], '.0f')} rows"
        if h["ttd_median_seconds"] is not None:
            ttd = f"{h['ttd_median_seconds']:.1f} s ({ttd})"
        ttd += "   from a segment's first row to its first flagged row"
    lines = [
        f"segments detected      {seg}",
        f"PR-AUC                 {_num(h['pr_auc'])}   random scores get the label rate, "
        f"{_num(h['pr_auc_random'])} ({h['labelled_rows']} of {h['rows']} rows)",
        f"ROC-AUC                {_num(h['roc_auc'])}   random scores get 0.5",
        f"false alerts           {fa}",
        f"median time to detect  {ttd}",
    ]
    out.write("".join(f"{indent}{line}\n" for line in lines))
