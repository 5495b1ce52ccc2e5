"""Anomaly-detection metrics for scored series: ranking, threshold, segment, range and NAB scores.

Every function here is pure numpy and vectorised; nothing reads or writes files.

Conventions shared by all functions:

* ``scores`` are floats where higher means more anomalous.  Rows whose score is not finite
  (``NaN`` for dead-lettered rows) are **removed before anything else**; positions (segments,
  windows, delays in rows) then refer to the remaining rows.
* ``labels`` are 0/1 (or bool) ground truth of the same length.
* A threshold ``t`` flags a row when ``score >= t``.
* ``groups`` (optional, same length) splits the rows into independent series, e.g. one per key:
  a new series starts wherever the value changes, so rows of a series must be contiguous.
  Segments, buffers and NAB windows never cross a series boundary; ranking and threshold
  metrics pool all rows (one global threshold).
* Undefined values (no positive label, no window, ...) are returned as ``nan``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "STANDARD_PROFILE",
    "DetectionDelay",
    "NABProfile",
    "NABResult",
    "RangeAUC",
    "ThresholdF1",
    "VUS",
    "average_precision",
    "best_f1",
    "best_f1_pa_k",
    "best_f1_point_adjusted",
    "binary_prf",
    "default_vus_window",
    "detection_metrics",
    "evaluate_detection",
    "nab_score",
    "nab_windows",
    "pa_k_auc",
    "random_baseline",
    "range_auc",
    "roc_auc",
    "segments",
    "time_to_detect",
    "vus",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Cap on the default VUS buffer length ``L`` (cost grows as segments x L^2).
VUS_MAX_DEFAULT_WINDOW = 256
#: Number of thresholds sampled per curve in the VUS reference implementation.
VUS_REFERENCE_THRESHOLDS = 250


# --------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdF1:
    """The best F1 over all thresholds, the threshold reaching it and precision/recall there."""

    f1: float
    threshold: float
    precision: float
    recall: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RangeAUC:
    """Range-AUC-ROC and range-AUC-PR for one buffer length (Paparrizos et al. 2022)."""

    roc: float
    pr: float
    window: int


@dataclass(frozen=True, slots=True)
class VUS:
    """Volume under the range-ROC / range-PR surfaces: mean over buffer lengths ``0..L``."""

    roc: float
    pr: float
    max_window: int


@dataclass(frozen=True, slots=True)
class NABProfile:
    """NAB application profile; signed weights as written in Lavin & Ahmad (2015)."""

    a_tp: float = 1.0
    a_fp: float = -0.11
    a_fn: float = -1.0


#: The NAB "standard" profile.
STANDARD_PROFILE = NABProfile()


@dataclass(frozen=True, slots=True)
class NABResult:
    """NAB score normalised to 0 (null detector) .. 100 (perfect detector), and its parts."""

    score: float
    raw: float
    null: float
    perfect: float
    n_windows: int
    tp: int  # windows with at least one detection
    fn: int  # windows without detection
    fp: int  # detections outside every window

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DetectionDelay:
    """Delay from the start of each labelled segment to its first detection inside it."""

    n_segments: int
    n_detected: int
    detected_fraction: float
    mean_rows: float
    median_rows: float
    mean_seconds: float
    median_seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _as_bool(values: ArrayLike, name: str) -> BoolArray:
    arr = np.asarray(values).reshape(-1)
    if arr.dtype == np.bool_:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 values")
    return arr.astype(np.bool_)


def _clean(
    scores: ArrayLike, labels: ArrayLike, groups: ArrayLike | None = None
) -> tuple[FloatArray, BoolArray, NDArray[Any] | None]:
    """Drop rows with a non-finite score; return (scores, labels, groups) as flat arrays."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = _as_bool(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} != {y.size}")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    if g is not None and g.shape != s.shape:
        raise ValueError(f"groups and scores differ in length: {g.size} != {s.size}")
    keep = np.isfinite(s)
    if not keep.all():
        s, y = s[keep], y[keep]
        g = None if g is None else g[keep]
    return s, y, g


def _group_starts(n: int, groups: NDArray[Any] | None) -> BoolArray:
    """True where a new series starts (row 0 and every change of ``groups``)."""
    start = np.zeros(n, dtype=np.bool_)
    if n:
        start[0] = True
        if groups is not None:
            start[1:] = groups[1:] != groups[:-1]
    return start


def _group_bounds(n: int, groups: NDArray[Any] | None) -> tuple[IntArray, IntArray]:
    """Per row: start and exclusive end of the series the row belongs to."""
    start = _group_starts(n, groups)
    first = np.flatnonzero(start)
    last = np.append(first[1:], n)
    gid = np.cumsum(start) - 1
    return first[gid], last[gid]


def _segment_arrays(y: BoolArray, groups: NDArray[Any] | None) -> tuple[IntArray, IntArray]:
    """Starts and exclusive ends of the maximal runs of positive labels within each series."""
    n = y.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    new = _group_starts(n, groups)
    prev = np.zeros(n, dtype=np.bool_)
    prev[1:] = y[:-1]
    starts = np.flatnonzero(y & (new | ~prev))
    nxt = np.zeros(n, dtype=np.bool_)
    nxt[:-1] = y[1:] & ~new[1:]
    ends = np.flatnonzero(y & ~nxt) + 1
    return starts.astype(np.int64), ends.astype(np.int64)


def _ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """Concatenation of ``arange(s, e)`` for every pair."""
    lengths = ends - starts
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lengths)


def segments(labels: ArrayLike, groups: ArrayLike | None = None) -> list[tuple[int, int]]:
    """Maximal runs of positive labels as ``(start, end_exclusive)`` pairs.

    Parameters
    ----------
    labels : array_like of {0, 1}
        Ground truth per row.
    groups : array_like, optional
        Series id per row; a run never continues across a change of series.

    Returns
    -------
    list of tuple of int
        One ``(start, end_exclusive)`` pair per labelled segment, in order.

    Examples
    --------
    >>> segments([0, 1, 1, 0, 0, 1])
    [(1, 3), (5, 6)]
    >>> segments([1, 1, 1, 1], groups=["a", "a", "b", "b"])
    [(0, 2), (2, 4)]
    """
    y = _as_bool(labels, "labels")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    starts, ends = _segment_arrays(y, g)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


# --------------------------------------------------------------------------------------------
# ranking metrics
# --------------------------------------------------------------------------------------------


def _average_ranks(x: FloatArray) -> FloatArray:
    """1-based ranks with ties given the mean of the ranks they span."""
    n = x.size
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    first = np.concatenate(([0], boundaries))
    last = np.concatenate((boundaries, [n]))
    mean_rank = (first + last + 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, last - first)
    return ranks


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties counted as one half.

    Parameters
    ----------
    scores : array_like of float
        Anomaly scores; non-finite rows are excluded.
    labels : array_like of {0, 1}
        Ground truth.

    Returns
    -------
    float
        ROC-AUC in [0, 1], or ``nan`` when only one class is present.

    Examples
    --------
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> roc_auc([1.0, 1.0], [0, 1])
    0.5
    """
    s, y, _ = _clean(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _pr_counts(s: FloatArray, y: BoolArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Distinct thresholds (descending) and TP/FP counts for ``score >= threshold``."""
    order = np.argsort(-s, kind="mergesort")
    ss = s[order]
    ys = y[order]
    last_of_tie = np.concatenate((np.flatnonzero(np.diff(ss)), [ss.size - 1]))
    tps = np.cumsum(ys, dtype=np.float64)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return ss[last_of_tie], tps, fps


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """PR-AUC as average precision: ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    This is the definition of :func:`sklearn.metrics.average_precision_score` (step-wise, no
    interpolation).

    Parameters
    ----------
    scores : array_like of float
        Anomaly scores; non-finite rows are excluded.
    labels : array_like of {0, 1}
        Ground truth.

    Returns
    -------
    float
        Average precision in [0, 1], or ``nan`` without positive labels.

    Examples
    --------
    >>> round(average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 6)
    0.833333
    """
    s, y, _ = _clean(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    _, tps, fps = _pr_counts(s, y)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# --------------------------------------------------------------------------------------------
# threshold metrics
# --------------------------------------------------------------------------------------------


def _best_f1_from(pos: FloatArray, neg_sorted: FloatArray) -> ThresholdF1:
    """Best F1 when positives are flagged iff ``pos >= t`` and negatives iff ``neg >= t``.

    Only positive scores are candidate thresholds: raising ``t`` up to the next positive score
    keeps TP and cannot add FP, so the best (and highest) threshold is always one of them.
    ``neg_sorted`` must be sorted ascending.
    """
    n_pos = pos.size
    if n_pos == 0:
        nan = float("nan")
        return ThresholdF1(nan, nan, nan, nan)
    pos_sorted = np.sort(pos)
    candidates = np.unique(pos_sorted)[::-1]
    tp = n_pos - np.searchsorted(pos_sorted, candidates, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, candidates, side="left")
    f1 = 2.0 * tp / (tp + fp + n_pos)
    i = int(np.argmax(f1))
    return ThresholdF1(
        f1=float(f1[i]),
        threshold=float(candidates[i]),
        precision=float(tp[i] / (tp[i] + fp[i])),
        recall=float(tp[i] / n_pos),
    )


def best_f1(scores: ArrayLike, labels: ArrayLike) -> ThresholdF1:
    """Best pointwise F1 over every threshold (an oracle threshold: an upper bound).

    Parameters
    ----------
    scores : array_like of float
        Anomaly scores; non-finite rows are excluded.
    labels : array_like of {0, 1}
        Ground truth.

    Returns
    -------
    ThresholdF1
        F1, the highest threshold reaching it, and precision/recall there; all ``nan``
        without positive labels.

    Examples
    --------
    >>> r = best_f1([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> round(r.f1, 4), r.threshold, round(r.precision, 4), r.recall
    (0.8, 0.35, 0.6667, 1.0)
    """
    s, y, _ = _clean(scores, labels)
    return _best_f1_from(s[y], np.sort(s[~y]))


def binary_prf(detections: ArrayLike, labels: ArrayLike) -> tuple[float, float, float]:
    """Pointwise precision, recall and F1 of binary detections.

    Examples
    --------
    >>> binary_prf([0, 1, 1, 0], [0, 1, 0, 1])
    (0.5, 0.5, 0.5)
    """
    d = _as_bool(detections, "detections")
    y = _as_bool(labels, "labels")
    tp = float(np.sum(d & y))
    n_det, n_pos = float(d.sum()), float(y.sum())
    precision = tp / n_det if n_det else float("nan")
    recall = tp / n_pos if n_pos else float("nan")
    f1 = 2.0 * tp / (n_det + n_pos) if n_pos else float("nan")
    return precision, recall, f1


def _min_flagged(k: float, lengths: IntArray) -> IntArray:
    """Smallest count ``c`` with ``c / length > k`` (PA%K's strict inequality), per segment."""
    m = np.floor(k * lengths).astype(np.int64) + 1
    m = np.where((m - 1) / lengths > k, m - 1, m)
    return np.where(m / lengths <= k, m + 1, m)


class _PAK:
    """Sorted segment scores shared by PA%K evaluations at several K."""

    def __init__(self, s: FloatArray, y: BoolArray, g: NDArray[Any] | None) -> None:
        self.neg_sorted = np.sort(s[~y])
        starts, ends = _segment_arrays(y, g)
        self.lengths = ends - starts
        pos = _ranges(starts, ends)
        seg_id = np.repeat(np.arange(starts.size), self.lengths)
        self.vals = s[pos]
        self.sorted_vals = self.vals[np.lexsort((-self.vals, seg_id))]  # descending per segment
        self.offsets = np.cumsum(self.lengths) - self.lengths

    def best(self, k: float) -> ThresholdF1:
        if self.lengths.size == 0:
            return _best_f1_from(self.vals, self.neg_sorted)
        m = _min_flagged(k, self.lengths)
        reachable = m <= self.lengths
        tau = np.full(self.lengths.size, -np.inf)
        tau[reachable] = self.sorted_vals[self.offsets[reachable] + m[reachable] - 1]
        effective = np.maximum(self.vals, np.repeat(tau, self.lengths))
        return _best_f1_from(effective, self.neg_sorted)


def best_f1_pa_k(
    scores: ArrayLike, labels: ArrayLike, k: float = 0.2, groups: ArrayLike | None = None
) -> ThresholdF1:
    """Best F1 under PA%K (Kim et al. 2022), over every threshold.

    At a threshold, a labelled segment whose fraction of flagged rows is **strictly greater**
    than ``k`` counts as entirely detected (all its rows are true positives); otherwise its rows
    keep their pointwise outcome.  ``k=0`` is classic point adjustment (one flagged row credits
    the whole segment: optimistic), ``k=1`` is plain pointwise F1.

    Reference: S. Kim, K. Choi, H.-S. Choi, B. Lee, S. Yoon, "Towards a Rigorous Evaluation of
    Time-Series Anomaly Detection", AAAI 2022.

    Implementation: a segment becomes adjusted once the threshold drops to its ``m``-th largest
    score, ``m`` being the least number of flagged rows exceeding ``k``; so each labelled row is
    flagged iff ``t <= max(own score, m-th largest score of its segment)``, which turns PA%K into
    a pointwise problem on those effective scores.

    Parameters
    ----------
    scores, labels : array_like
        Scores (non-finite rows excluded) and 0/1 ground truth.
    k : float
        Fraction in [0, 1].
    groups : array_like, optional
        Series id per row; segments do not cross series.

    Returns
    -------
    ThresholdF1

    Examples
    --------
    One segment of 5 rows; at ``t = 0.8`` two of its rows (40% > 20%) are flagged, so PA%20
    credits all five; pointwise, the best is to flag everything (``t = 0.2``).

    >>> s, y = [0.9, 0.8, 0.2, 0.2, 0.2, 0.5, 0.5, 0.5], [1, 1, 1, 1, 1, 0, 0, 0]
    >>> r = best_f1_pa_k(s, y, k=0.2)
    >>> r.f1, r.threshold
    (1.0, 0.8)
    >>> best_f1_pa_k(s, y, k=0.0).threshold  # PA: the single top row is enough
    0.9
    >>> round(best_f1_pa_k(s, y, k=1.0).f1, 4) == round(best_f1(s, y).f1, 4) == 0.7692
    True
    """
    if not 0.0 <= k <= 1.0:
        raise ValueError(f"k must be in [0, 1], got {k}")
    s, y, g = _clean(scores, labels, groups)
    return _PAK(s, y, g).best(k)


def best_f1_point_adjusted(
    scores: ArrayLike, labels: ArrayLike, groups: ArrayLike | None = None
) -> ThresholdF1:
    """Best point-adjusted F1 (PA): **optimistic**, a single flagged row credits its segment.

    PA inflates results: random scores can reach a high PA-F1 on long segments (Kim et al. 2022).
    Report it only next to :func:`best_f1_pa_k` and the random baseline.

    Examples
    --------
    >>> best_f1_point_adjusted([0.1, 0.9, 0.1, 0.1, 0.2], [0, 1, 1, 1, 0]).f1
    1.0
    """
    return best_f1_pa_k(scores, labels, k=0.0, groups=groups)


def pa_k_auc(
    scores: ArrayLike,
    labels: ArrayLike,
    ks: ArrayLike | None = None,
    groups: ArrayLike | None = None,
) -> float:
    """Area under best-F1(PA%K) as K goes 0 -> 1 (trapezoid, normalised by the K range).

    Kim et al. (2022) propose this K-free summary; the default grid is K = 0, 0.1, ..., 1.

    Examples
    --------
    >>> pa_k_auc([0.1, 0.9, 0.8, 0.7, 0.2], [0, 1, 1, 1, 0])
    1.0
    """
    grid = np.linspace(0.0, 1.0, 11) if ks is None else np.asarray(ks, dtype=np.float64)
    if grid.size < 2:
        raise ValueError("ks needs at least two values")
    if grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError("ks must lie in [0, 1]")
    pak = _PAK(*_clean(scores, labels, groups))
    f1 = np.array([pak.best(float(k)).f1 for k in grid])
    area = np.sum(np.diff(grid) * (f1[1:] + f1[:-1]) / 2.0)
    return float(area / (grid[-1] - grid[0]))


# --------------------------------------------------------------------------------------------
# range-based: range-AUC and VUS (Paparrizos et al. 2022)
# --------------------------------------------------------------------------------------------


class _RangeCurves:
    """Shared precomputation for range-AUC curves at many buffer lengths.

    Follows the reference implementation (TheDatumOrg/VUS, ``vus/utils/metrics.py``,
    ``RangeAUC`` and ``RangeAUC_volume``):

    * buffer ``l``: each segment is extended by ``l // 2`` rows on both sides with soft labels
      ``sqrt(1 - d / l)`` (``d`` = distance to the segment), overlapping weights summed and capped
      at 1;
    * the existence reward uses the maximal runs of non-zero soft labels (extended segments that
      touch or overlap merge);
    * ``TP = sum(soft * pred)``, ``P' = (P + sum(soft)) / 2``, ``recall = min(TP / P', 1)``,
      ``TPR = recall * existence_ratio``, ``FPR = (N_pred - TP) / (n - P')``,
      ``precision = TP / N_pred``;
    * thresholds ``score_sorted_desc[linspace(0, n - 1, 250).astype(int)]``; ROC is integrated by
      trapezoids from (0, 0) to (1, 1), PR by trapezoids over (TPR, precision) from (0, 1).
    """

    def __init__(
        self,
        s: FloatArray,
        y: BoolArray,
        g: NDArray[Any] | None,
        n_thresholds: int | None,
    ) -> None:
        n = s.size
        self.n = n
        self.y = y
        desc = np.sort(s)[::-1]
        if n_thresholds is None:
            thr = np.unique(s)[::-1]
        else:
            thr = desc[np.linspace(0, n - 1, n_thresholds).astype(np.int64)]
        self.k = thr.size
        thr_asc = thr[::-1]
        s_asc = desc[::-1]
        # number of rows flagged at each threshold
        self.n_pred = (n - np.searchsorted(s_asc, thr, side="left")).astype(np.float64)
        # index of the first threshold that flags each row (thresholds are non-increasing)
        self.first_k = (self.k - np.searchsorted(thr_asc, s, side="right")).astype(np.int64)
        self.p = float(y.sum())
        self.tp_base = self._cumcount(self.first_k[y])
        starts, ends = _segment_arrays(y, g)
        self.starts, self.ends = starts, ends
        lo, hi = _group_bounds(n, g)
        self.seg_lo = lo[starts]
        self.seg_hi = hi[starts]
        lengths = ends - starts
        self.seg_kmin = (
            np.minimum.reduceat(self.first_k[_ranges(starts, ends)], np.cumsum(lengths) - lengths)
            if starts.size
            else np.zeros(0, dtype=np.int64)
        )

    def _cumcount(self, k_idx: IntArray, weights: FloatArray | None = None) -> FloatArray:
        counts = np.bincount(k_idx, weights=weights, minlength=self.k + 1)[: self.k]
        return np.cumsum(counts, dtype=np.float64)

    def at(self, window: int) -> RangeAUC:
        """Range-AUC-ROC/PR for buffer length ``window``."""
        nseg = self.starts.size
        if nseg == 0 or self.n == 0:
            return RangeAUC(float("nan"), float("nan"), window)
        half = window // 2
        ext_pos = np.zeros(0, dtype=np.int64)
        ext_src = np.zeros(0, dtype=np.int64)
        ext_w = np.zeros(0, dtype=np.float64)
        if half > 0:
            d = np.arange(1, half + 1, dtype=np.int64)
            left = self.starts[:, None] - d[None, :]
            right = (self.ends - 1)[:, None] + d[None, :]
            ok_left = left >= self.seg_lo[:, None]
            ok_right = right < self.seg_hi[:, None]
            weight = np.sqrt(1.0 - d / window)
            src = np.broadcast_to(np.arange(nseg)[:, None], left.shape)
            wts = np.broadcast_to(weight[None, :], left.shape)
            ext_pos = np.concatenate((left[ok_left], right[ok_right]))
            ext_src = np.concatenate((src[ok_left], src[ok_right]))
            ext_w = np.concatenate((wts[ok_left], wts[ok_right]))
            normal = ~self.y[ext_pos]  # labelled rows already carry weight 1
            ext_pos, ext_src, ext_w = ext_pos[normal], ext_src[normal], ext_w[normal]
        # soft labels of the buffer rows
        uniq, inverse = np.unique(ext_pos, return_inverse=True)
        soft = np.minimum(np.bincount(inverse, weights=ext_w, minlength=uniq.size), 1.0)
        tp = self.tp_base + self._cumcount(self.first_k[uniq], soft)
        p_new = self.p + soft.sum() / 2.0
        # extended segments: merge those that touch or overlap within a series
        lo = np.maximum(self.starts - half, self.seg_lo)
        hi = np.minimum(self.ends - 1 + half, self.seg_hi - 1)
        new = np.ones(nseg, dtype=np.bool_)
        new[1:] = (lo[1:] > hi[:-1] + 1) | (self.seg_lo[1:] != self.seg_lo[:-1])
        seg_to_run = np.cumsum(new) - 1
        n_runs = int(seg_to_run[-1]) + 1
        run_kmin = np.full(n_runs, self.k, dtype=np.int64)
        np.minimum.at(run_kmin, seg_to_run, self.seg_kmin)
        if ext_pos.size:
            np.minimum.at(run_kmin, seg_to_run[ext_src], self.first_k[ext_pos])
        existence = self._cumcount(run_kmin[run_kmin < self.k]) / n_runs
        with np.errstate(invalid="ignore", divide="ignore"):  # n == P' when every row is labelled
            recall = np.minimum(tp / p_new, 1.0)
            tpr = recall * existence
            fpr = (self.n_pred - tp) / (self.n - p_new)
            precision = tp / self.n_pred
        roc_t = np.concatenate(([0.0], tpr, [1.0]))
        roc_f = np.concatenate(([0.0], fpr, [1.0]))
        roc = float(np.sum(np.diff(roc_f) * (roc_t[1:] + roc_t[:-1]) / 2.0))
        pr_t = np.concatenate(([0.0], tpr))
        pr_p = np.concatenate(([1.0], precision))
        pr = float(np.sum(np.diff(pr_t) * (pr_p[1:] + pr_p[:-1]) / 2.0))
        return RangeAUC(roc, pr, window)


def range_auc(
    scores: ArrayLike,
    labels: ArrayLike,
    window: int,
    n_thresholds: int | None = VUS_REFERENCE_THRESHOLDS,
    groups: ArrayLike | None = None,
) -> RangeAUC:
    """Range-AUC-ROC and range-AUC-PR with buffer length ``window`` (Paparrizos et al. 2022).

    J. Paparrizos, P. Boniol, T. Palpanas, R. S. Tsay, A. Elmore, M. J. Franklin, "Volume Under
    the Surface: A New Accuracy Evaluation Measure for Time-Series Anomaly Detection", PVLDB
    15(11), 2022.  Semantics follow the authors' reference code (see :class:`_RangeCurves`),
    including its 250 sampled thresholds; ``n_thresholds=None`` uses every distinct score.

    Examples
    --------
    >>> r = range_auc([0.1, 0.2, 0.9, 0.8, 0.3, 0.1], [0, 0, 1, 1, 0, 0], window=0)
    >>> r.roc, r.pr
    (1.0, 1.0)
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    s, y, g = _clean(scores, labels, groups)
    if not y.any():
        return RangeAUC(float("nan"), float("nan"), int(window))
    return _RangeCurves(s, y, g, n_thresholds).at(int(window))


def default_vus_window(labels: ArrayLike, groups: ArrayLike | None = None) -> int:
    """Default VUS buffer ``L``: the longest labelled segment, capped at 256 rows.

    Examples
    --------
    >>> default_vus_window([0, 1, 1, 1, 0, 1])
    3
    """
    y = _as_bool(labels, "labels")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    starts, ends = _segment_arrays(y, g)
    if starts.size == 0:
        return 0
    return int(min(int((ends - starts).max()), VUS_MAX_DEFAULT_WINDOW))


def vus(
    scores: ArrayLike,
    labels: ArrayLike,
    max_window: int | None = None,
    n_thresholds: int | None = VUS_REFERENCE_THRESHOLDS,
    groups: ArrayLike | None = None,
) -> VUS:
    """VUS-ROC and VUS-PR: the mean of range-AUC-ROC/PR over buffer lengths ``0..L``.

    ``L = max_window``; by default the longest labelled segment of the evaluated rows, capped at
    256 (the authors' benchmarks use twice the estimated period, which needs the raw series).
    See :func:`range_auc` for the reference.

    Examples
    --------
    >>> v = vus([0.1, 0.2, 0.9, 0.8, 0.3, 0.1], [0, 0, 1, 1, 0, 0], max_window=4)
    >>> round(v.pr, 4), v.max_window
    (0.9924, 4)
    """
    s, y, g = _clean(scores, labels, groups)
    big_l = default_vus_window(y, g) if max_window is None else int(max_window)
    if big_l < 0:
        raise ValueError(f"max_window must be >= 0, got {big_l}")
    if not y.any():
        return VUS(float("nan"), float("nan"), big_l)
    curves = _RangeCurves(s, y, g, n_thresholds)
    results = [curves.at(w) for w in range(big_l + 1)]
    return VUS(
        roc=float(np.mean([r.roc for r in results])),
        pr=float(np.mean([r.pr for r in results])),
        max_window=big_l,
    )


# --------------------------------------------------------------------------------------------
# NAB (Lavin & Ahmad 2015)
# --------------------------------------------------------------------------------------------


def _nab_window_arrays(
    y: BoolArray, g: NDArray[Any] | None, window_fraction: float
) -> tuple[IntArray, IntArray]:
    """NAB windows as inclusive ``(left, right)`` row indices."""
    n = y.size
    starts, ends = _segment_arrays(y, g)
    if starts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    lo_all, hi_all = _group_bounds(n, g)
    lo, hi = lo_all[starts], hi_all[starts]
    _, group_idx, per_group = np.unique(lo, return_inverse=True, return_counts=True)
    width = np.floor(window_fraction * (hi - lo) / per_group[group_idx]).astype(np.int64)
    last = ends - 1
    centre = (starts + last) // 2
    left = np.maximum(np.minimum(starts, centre - width // 2), lo)
    right = np.minimum(np.maximum(last, centre + width // 2), hi - 1)
    new = np.ones(starts.size, dtype=np.bool_)
    new[1:] = (left[1:] > right[:-1]) | (lo[1:] != lo[:-1])
    first = np.flatnonzero(new)
    return left[first], np.maximum.reduceat(right, first)


def nab_windows(
    labels: ArrayLike, groups: ArrayLike | None = None, window_fraction: float = 0.1
) -> list[tuple[int, int]]:
    """NAB anomaly windows as ``(start, end_exclusive)``.

    As in NAB's labeller: the window length is ``int(window_fraction * n / m)`` for a series of
    ``n`` rows with ``m`` labelled segments, centred on each segment (a segment longer than that
    is covered whole), clipped to the series, overlapping windows merged.

    Examples
    --------
    >>> nab_windows([0] * 10 + [1] + [0] * 9)
    [(9, 12)]
    """
    y = _as_bool(labels, "labels")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    left, right = _nab_window_arrays(y, g, window_fraction)
    return [(int(a), int(b) + 1) for a, b in zip(left, right, strict=True)]


def _scaled_sigmoid(x: FloatArray) -> FloatArray:
    """NAB's ``2 * sigmoid(-5 x) - 1``, and -1 from ``x >= 3`` on."""
    clipped = np.minimum(x, 3.0)
    return np.where(x >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * clipped)) - 1.0)


def nab_score(
    detections: ArrayLike,
    labels: ArrayLike,
    groups: ArrayLike | None = None,
    profile: NABProfile = STANDARD_PROFILE,
    window_fraction: float = 0.1,
    probation: int = 0,
) -> NABResult:
    """NAB score of binary detections (Lavin & Ahmad 2015), normalised to 0..100.

    A. Lavin, S. Ahmad, "Evaluating Real-time Anomaly Detection Algorithms - the Numenta Anomaly
    Benchmark", IEEE ICMLA 2015; scoring as in ``nab/sweeper.py``:

    * in a window ``[L, R]`` (width ``W``) a detection at row ``i`` is worth
      ``A_TP * S(-(R - i + 1) / W) / S(-1)`` with ``S(x) = 2 sigmoid(-5x) - 1``: the first row
      earns ``A_TP``, the last nearly 0; only the best (earliest) detection of a window counts;
    * a window without detection costs ``A_FN``;
    * a detection outside windows costs ``|A_FP| * S((i - R_prev) / (W_prev - 1))`` relative to
      the previous window of the series (``|A_FP| * -1`` before the first one);
    * normalised: ``100 * (raw - null) / (perfect - null)`` with ``null = A_FN * windows`` (no
      detection) and ``perfect = A_TP * windows``; ``nan`` without windows.

    Detections in the first ``probation`` rows of each series are ignored and windows starting
    there are dropped (NAB itself uses ``min(floor(0.15 n), 750)``; the default here is 0).
    Windows come from :func:`nab_windows`.  Rows are the time axis (NAB uses timestamps of
    regularly sampled data).

    Examples
    --------
    >>> labels = [0] * 10 + [1] + [0] * 9          # window rows 9..11
    >>> nab_score([0] * 9 + [1] + [0] * 10, labels).score   # detected at the window's start
    100.0
    >>> nab_score([0] * 20, labels).score
    0.0
    """
    det = _as_bool(detections, "detections")
    y = _as_bool(labels, "labels")
    if det.shape != y.shape:
        raise ValueError(f"detections and labels differ in length: {det.size} != {y.size}")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    n = y.size
    left, right = _nab_window_arrays(y, g, window_fraction)
    lo, _ = _group_bounds(n, g)
    if probation > 0 and left.size:
        keep = left >= lo[left] + probation
        left, right = left[keep], right[keep]
    idx = np.flatnonzero(det & (np.arange(n) >= lo + probation))
    n_windows = int(left.size)
    parts = np.full(n_windows, profile.a_fn, dtype=np.float64)
    fp_total = 0.0
    n_fp = int(idx.size)
    if n_windows and idx.size:
        w = np.searchsorted(left, idx, side="right") - 1
        wc = np.maximum(w, 0)
        width = (right - left + 1).astype(np.float64)
        has_prev = (w >= 0) & (left[wc] >= lo[idx])
        inside = has_prev & (idx <= right[wc])
        i_in, w_in = idx[inside], wc[inside]
        tp_val = (
            _scaled_sigmoid(-(right[w_in] - i_in + 1) / width[w_in])
            / _scaled_sigmoid(np.array(-1.0))
            * profile.a_tp
        )
        np.maximum.at(parts, w_in, tp_val)
        out = ~inside
        past = np.full(int(out.sum()), 3.0)
        prev = has_prev[out]
        w_out, i_out = wc[out][prev], idx[out][prev]
        past[prev] = (i_out - right[w_out]) / np.maximum(width[w_out] - 1.0, 1.0)
        fp_total = float(np.sum(_scaled_sigmoid(past) * abs(profile.a_fp)))
        n_fp = int(out.sum())
    elif idx.size:
        fp_total = float(idx.size * -abs(profile.a_fp))
    raw = float(parts.sum()) + fp_total
    null = profile.a_fn * n_windows
    perfect = profile.a_tp * n_windows
    score = 100.0 * (raw - null) / (perfect - null) if n_windows else float("nan")
    n_tp = int(np.sum(parts > profile.a_fn)) if n_windows else 0
    return NABResult(
        score=float(score),
        raw=raw,
        null=float(null),
        perfect=float(perfect),
        n_windows=n_windows,
        tp=n_tp,
        fn=n_windows - n_tp,
        fp=n_fp,
    )


# --------------------------------------------------------------------------------------------
# time to detect
# --------------------------------------------------------------------------------------------


def time_to_detect(
    detections: ArrayLike,
    labels: ArrayLike,
    timestamps_ms: ArrayLike | None = None,
    groups: ArrayLike | None = None,
) -> DetectionDelay:
    """Delay from each segment's first row to its first detected row inside the segment.

    Segments without a detection inside them are missed (counted in ``detected_fraction``, not
    in the delays).  Seconds need ``timestamps_ms`` (milliseconds since the epoch).

    Examples
    --------
    >>> d = time_to_detect([0, 0, 0, 1, 0, 0, 0, 0], [0, 1, 1, 1, 0, 1, 1, 0],
    ...                    timestamps_ms=[0, 1000, 2000, 3000, 4000, 5000, 6000, 7000])
    >>> d.detected_fraction, d.mean_rows, d.mean_seconds
    (0.5, 2.0, 2.0)
    """
    det = _as_bool(detections, "detections")
    y = _as_bool(labels, "labels")
    if det.shape != y.shape:
        raise ValueError(f"detections and labels differ in length: {det.size} != {y.size}")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    starts, ends = _segment_arrays(y, g)
    nan = float("nan")
    if starts.size == 0:
        return DetectionDelay(0, 0, nan, nan, nan, nan, nan)
    flagged = np.flatnonzero(det)
    j = np.searchsorted(flagged, starts, side="left")
    first = flagged[np.minimum(j, max(flagged.size - 1, 0))] if flagged.size else starts
    hit = (j < flagged.size) & (first < ends)
    rows = (first - starts)[hit].astype(np.float64)
    seconds = np.zeros(0)
    if timestamps_ms is not None:
        ts = np.asarray(timestamps_ms, dtype=np.float64).reshape(-1)
        if ts.shape != y.shape:
            raise ValueError("timestamps_ms and labels differ in length")
        seconds = (ts[first] - ts[starts])[hit] / 1000.0
    n_hit = int(hit.sum())
    return DetectionDelay(
        n_segments=int(starts.size),
        n_detected=n_hit,
        detected_fraction=n_hit / starts.size,
        mean_rows=float(rows.mean()) if n_hit else nan,
        median_rows=float(np.median(rows)) if n_hit else nan,
        mean_seconds=float(seconds.mean()) if seconds.size else nan,
        median_seconds=float(np.median(seconds)) if seconds.size else nan,
    )


# --------------------------------------------------------------------------------------------
# all metrics + random baseline
# --------------------------------------------------------------------------------------------


def detection_metrics(
    scores: ArrayLike,
    labels: ArrayLike,
    detections: ArrayLike | None = None,
    timestamps_ms: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    vus_window: int | None = None,
    n_thresholds: int | None = VUS_REFERENCE_THRESHOLDS,
) -> dict[str, float]:
    """Every metric of this module as one flat ``name -> value`` dict.

    Rows with a non-finite score are removed from all inputs first.  Keys ending in
    ``_threshold`` are oracle thresholds chosen on the labels.  Metrics of binary
    ``detections`` (``detector_*``, ``nab_*``, ``ttd_*``, ``detected_segment_fraction``) appear
    only when ``detections`` is given.

    Examples
    --------
    >>> m = detection_metrics([0.1, 0.2, 0.9, 0.8, 0.3, 0.1], [0, 0, 1, 1, 0, 0])
    >>> m["roc_auc"], m["pr_auc"], m["f1_best"]
    (1.0, 1.0, 1.0)
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    keep = np.isfinite(s)
    s = s[keep]
    y = _as_bool(labels, "labels")[keep]
    g = None if groups is None else np.asarray(groups).reshape(-1)[keep]
    out: dict[str, float] = {
        "roc_auc": roc_auc(s, y),
        "pr_auc": average_precision(s, y),
    }
    for name, res in (
        ("f1_best", best_f1(s, y)),
        ("f1_pa_k20", best_f1_pa_k(s, y, 0.2, g)),
        ("f1_point_adjusted_optimistic", best_f1_point_adjusted(s, y, g)),
    ):
        out[name] = res.f1
        out[f"{name}_precision"] = res.precision
        out[f"{name}_recall"] = res.recall
        out[f"{name}_threshold"] = res.threshold
    out["pa_k_auc"] = pa_k_auc(s, y, groups=g) if y.any() else float("nan")
    volume = vus(s, y, vus_window, n_thresholds, g)
    out["vus_pr"] = volume.pr
    out["vus_roc"] = volume.roc
    if detections is not None:
        d = _as_bool(detections, "detections")[keep]
        p, r, f1 = binary_prf(d, y)
        out["detector_precision"], out["detector_recall"], out["detector_f1"] = p, r, f1
        nab = nab_score(d, y, g)
        out["nab_score"] = nab.score
        out["nab_raw"] = nab.raw
        ts = None if timestamps_ms is None else np.asarray(timestamps_ms).reshape(-1)[keep]
        delay = time_to_detect(d, y, ts, g)
        out["detected_segment_fraction"] = delay.detected_fraction
        out["ttd_mean_rows"] = delay.mean_rows
        out["ttd_median_rows"] = delay.median_rows
        out["ttd_mean_seconds"] = delay.mean_seconds
        out["ttd_median_seconds"] = delay.median_seconds
    return out


def random_baseline(
    labels: ArrayLike,
    n_flagged: int | None = None,
    timestamps_ms: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    n_seeds: int = 10,
    seed: int = 0,
    vus_window: int | None = None,
    n_thresholds: int | None = VUS_REFERENCE_THRESHOLDS,
) -> dict[str, dict[str, float]]:
    """Mean and std (over seeds, ddof=1) of :func:`detection_metrics` for uniform random scores.

    With ``n_flagged``, the random detector also flags exactly that many rows (its
    ``n_flagged`` highest random scores), matching the model's detection rate for the binary
    metrics.  Thresholds are left out (meaningless for random scores).

    Examples
    --------
    >>> b = random_baseline([0] * 50 + [1] * 50, n_seeds=10)
    >>> abs(b["roc_auc"]["mean"] - 0.5) < 0.15
    True
    """
    if n_seeds < 2:
        raise ValueError("n_seeds must be >= 2")
    y = _as_bool(labels, "labels")
    rng = np.random.default_rng(seed)
    runs: list[dict[str, float]] = []
    for _ in range(n_seeds):
        scores = rng.random(y.size)
        det = None
        if n_flagged is not None:
            det = np.zeros(y.size, dtype=np.bool_)
            det[np.argsort(-scores, kind="mergesort")[:n_flagged]] = True
        runs.append(
            detection_metrics(scores, y, det, timestamps_ms, groups, vus_window, n_thresholds)
        )
    names = [k for k in runs[0] if not k.endswith("_threshold")]
    table = np.array([[r[k] for k in names] for r in runs], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        col = table[:, j]
        finite = col[np.isfinite(col)]
        out[name] = {
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        }
    return out


def evaluate_detection(
    scores: ArrayLike,
    labels: ArrayLike,
    detections: ArrayLike | None = None,
    timestamps_ms: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    vus_window: int | None = None,
    n_seeds: int = 10,
    seed: int = 0,
    n_thresholds: int | None = VUS_REFERENCE_THRESHOLDS,
) -> dict[str, Any]:
    """Model metrics and the random baseline on the same rows, side by side.

    Returns a dict with row counts, ``"model"`` (:func:`detection_metrics`) and ``"random"``
    (:func:`random_baseline`, same VUS ``L`` and, for binary metrics, the same number of flagged
    rows as the model).

    Examples
    --------
    >>> r = evaluate_detection([0.1, 0.2, 0.9, 0.8, 0.3, float("nan")], [0, 0, 1, 1, 0, 0])
    >>> r["n_scored"], r["n_excluded_nonfinite"], r["model"]["roc_auc"]
    (5, 1, 1.0)
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_all = _as_bool(labels, "labels")
    if s.shape != y_all.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} != {y_all.size}")
    keep = np.isfinite(s)
    y = y_all[keep]
    g = None if groups is None else np.asarray(groups).reshape(-1)[keep]
    ts = None if timestamps_ms is None else np.asarray(timestamps_ms).reshape(-1)[keep]
    det = None if detections is None else _as_bool(detections, "detections")[keep]
    big_l = default_vus_window(y, g) if vus_window is None else int(vus_window)
    model = detection_metrics(s[keep], y, det, ts, g, big_l, n_thresholds)
    n_flagged = None if det is None else int(det.sum())
    random = random_baseline(y, n_flagged, ts, g, n_seeds, seed, big_l, n_thresholds)
    return {
        "n_rows": int(s.size),
        "n_scored": int(keep.sum()),
        "n_excluded_nonfinite": int((~keep).sum()),
        "n_positive": int(y.sum()),
        "n_segments": len(segments(y, g)),
        "n_flagged": n_flagged,
        "vus_max_window": big_l,
        "random_seeds": n_seeds,
        "model": model,
        "random": random,
    }
