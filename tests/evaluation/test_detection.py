"""Detection metrics: hand-computed cases, properties, and slow literal reference versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgen.evaluation.detection import (
    average_precision,
    best_f1,
    best_f1_pa_k,
    best_f1_point_adjusted,
    default_vus_window,
    detection_metrics,
    evaluate_detection,
    nab_score,
    nab_windows,
    pa_k_auc,
    random_baseline,
    range_auc,
    roc_auc,
    segments,
    time_to_detect,
    vus,
)

SQRT2 = math.sqrt(2.0)


def scaled_sigmoid(x: float) -> float:
    return -1.0 if x >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


# --------------------------------------------------------------------------------------------
# slow literal reference implementations (loops, straight from the definitions)
# --------------------------------------------------------------------------------------------


def runs(x: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) of maximal runs of x > 0."""
    out, i, n = [], 0, len(x)
    while i < n:
        if x[i] > 0:
            j = i
            while j + 1 < n and x[j + 1] > 0:
                j += 1
            out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


def range_auc_slow(score, y, window, n_thresholds=250):
    """Range-AUC as in the VUS reference code (soft buffer labels, existence reward)."""
    score, y = np.asarray(score, float), np.asarray(y, int)
    n = len(y)
    lab = y.astype(float)
    for s, e in runs(y):
        for x in range(e + 1, min(e + window // 2 + 1, n)):
            lab[x] += math.sqrt(1 - (x - e) / window)
        for x in range(max(s - window // 2, 0), s):
            lab[x] += math.sqrt(1 - (s - x) / window)
    lab = np.minimum(lab, 1.0)
    extended = runs(lab)
    desc = -np.sort(-score)
    if n_thresholds is None:
        thresholds = np.unique(score)[::-1]
    else:
        thresholds = desc[np.linspace(0, n - 1, n_thresholds).astype(int)]
    tpr, fpr, prec = [0.0], [0.0], [1.0]
    p_new = (y.sum() + lab.sum()) / 2
    for t in thresholds:
        pred = (score >= t).astype(float)
        prod = lab * pred
        tp = prod.sum()
        existence = sum(prod[s : e + 1].sum() > 0 for s, e in extended) / len(extended)
        tpr.append(min(tp / p_new, 1) * existence)
        fpr.append((pred.sum() - tp) / (n - p_new))
        prec.append(tp / pred.sum())
    tpr.append(1.0)
    fpr.append(1.0)
    roc = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
    pr = sum((tpr[i + 1] - tpr[i]) * (prec[i + 1] + prec[i]) / 2 for i in range(len(prec) - 1))
    return roc, pr


def nab_slow(det, windows, a_tp=1.0, a_fp=-0.11, a_fn=-1.0):
    """Raw NAB score, looping like nab/sweeper.py (calcSweepScore + one threshold)."""
    max_tp = scaled_sigmoid(-1.0)
    windows = list(windows)  # inclusive (left, right)
    cur = prev_right = prev_width = None
    parts = {w: a_fn for w in windows}
    fp = 0.0
    for i, d in enumerate(det):
        if windows and cur is None and i == windows[0][0]:
            cur = windows.pop(0)
        if cur is not None:
            width = cur[1] - cur[0] + 1
            value = scaled_sigmoid(-(cur[1] - i + 1) / width) * a_tp / max_tp
            if d:
                parts[cur] = max(parts[cur], value)
        else:
            past = 3.0 if prev_right is None else abs(prev_right - i) / max(prev_width - 1, 1)
            if d:
                fp += scaled_sigmoid(past) * abs(a_fp)
        if cur is not None and i == cur[1]:
            prev_right, prev_width, cur = i, cur[1] - cur[0] + 1, None
    return sum(parts.values()) + fp


def pa_k_slow(scores, labels, k):
    """Best F1 under PA%K by brute force over every threshold."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    segs = segments(y)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        for a, b in segs:
            if pred[a:b].mean() > k:
                pred[a:b] = True
        tp = np.sum(pred & y)
        best = max(best, 2 * tp / (pred.sum() + y.sum()))
    return best


# --------------------------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------------------------


def test_segments_basic_and_edges():
    assert segments([]) == []
    assert segments([0, 0]) == []
    assert segments([1, 1, 0, 1]) == [(0, 2), (3, 4)]
    assert segments([True, False, True, True]) == [(0, 1), (2, 4)]
    # a run is split where the series (group) changes
    assert segments([1, 1, 1, 0], groups=["a", "b", "b", "b"]) == [(0, 1), (1, 3)]


def test_segments_rejects_non_binary():
    with pytest.raises(ValueError):
        segments([0, 2])


# --------------------------------------------------------------------------------------------
# ROC / PR
# --------------------------------------------------------------------------------------------


def test_roc_auc_hand_with_ties():
    # positives 0.5, 0.9; negatives 0.5, 0.2.  Pairs (pos > neg): 0.5~0.5 tie -> 1/2,
    # 0.5>0.2 -> 1, 0.9>0.5 -> 1, 0.9>0.2 -> 1; total 3.5 / 4 = 0.875
    assert roc_auc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)


def test_roc_auc_undefined_and_nan_rows():
    assert math.isnan(roc_auc([0.1, 0.2], [0, 0]))
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))
    # the NaN row (a positive) is excluded: remaining pos 0.9 vs neg 0.1 -> 1.0
    assert roc_auc([0.1, np.nan, 0.9], [0, 1, 1]) == 1.0


def test_average_precision_hand():
    # sorted: 0.9(+) 0.8(-) 0.7(+) 0.6(-) 0.5(-); P=2
    # t=0.9: P=1, R=.5 ; t=0.8: R stays .5 ; t=0.7: P=2/3, R=1 ; lower: R stays 1
    # AP = .5*1 + .5*(2/3) = 0.8333...
    assert average_precision([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0]) == pytest.approx(5 / 6)
    # with a tie at 0.7 (one + one -): t=0.9: R=0 ; t=0.7: TP1 FP2 -> P=1/3, R=.5 ;
    # t=0.1: TP2 FP2 -> P=.5, R=1.  AP = .5*(1/3) + .5*.5 = 0.41667
    assert average_precision([0.9, 0.7, 0.7, 0.1], [0, 1, 0, 1]) == pytest.approx(5 / 12)


def test_ranking_metrics_with_a_tie_across_classes_at_the_top():
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.8])
    y = np.array([0, 0, 1, 1, 0])
    # Pairs (pos, neg): (0.35: beats 0.1 only) + (0.8: beats 0.1, 0.4, ties 0.8) over 6 pairs.
    assert roc_auc(s, y) == pytest.approx((1 + 2.5) / 6)
    # Thresholds 0.8 (P=1/2, R=1/2) and 0.35 (P=2/4, R=1): AP = 0.5*0.5 + 0.5*0.5.
    assert average_precision(s, y) == pytest.approx(0.5)
    assert math.isnan(average_precision(s, np.zeros(5)))


def test_best_f1_hand():
    # sorted 0.8(+) 0.4(-) 0.35(+) 0.1(-), P=2.  F1 = 2TP/(TP+FP+P):
    # t=.8: 2/(1+0+2)=.667 ; t=.35: 4/(2+1+2)=.8 ; t=.1: 4/(2+2+2)=.667 -> best .8 at .35
    r = best_f1([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert r.f1 == pytest.approx(0.8)
    assert r.threshold == 0.35
    assert r.precision == pytest.approx(2 / 3)
    assert r.recall == 1.0


def test_point_adjusted_and_pa_k_hand():
    s = [0.1, 0.9, 0.1, 0.1, 0.6, 0.2]
    y = [0, 1, 1, 1, 0, 0]  # one segment rows 1..3
    # pointwise: t=.9 -> TP1 FP0: 2/(1+0+3)=.5 ; t=.1 -> TP3 FP3: 6/9=.667 (best)
    assert best_f1(s, y).f1 == pytest.approx(2 / 3)
    # PA: at t=.9 one flagged row credits the segment: TP3 FP0 -> 1.0
    pa = best_f1_point_adjusted(s, y)
    assert (pa.f1, pa.threshold) == (1.0, 0.9)
    # PA%20: 1/3 > 0.2 so one flagged row is enough -> same as PA
    assert best_f1_pa_k(s, y, 0.2).f1 == 1.0
    # PA%40: needs > 1.2 rows, i.e. 2; at t=.9 only one -> pointwise result .667
    assert best_f1_pa_k(s, y, 0.4).f1 == pytest.approx(2 / 3)


def test_pa_k_strict_inequality_at_exact_fraction():
    # segment of 5; k=0.4 needs > 2 flagged rows (2/5 == 0.4 is not enough)
    s = [0.9, 0.8, 0.1, 0.1, 0.1, 0.5, 0.5, 0.5]
    y = [1, 1, 1, 1, 1, 0, 0, 0]
    # t=.8 flags 2 of 5 -> not adjusted: TP2 FP0 -> 4/7 ; t=.1: TP5 FP3 -> 10/13 (best)
    assert best_f1_pa_k(s, y, 0.4).f1 == pytest.approx(10 / 13)
    # k=0.39: 2/5 > 0.39 -> adjusted at t=.8: TP5 FP0 -> 1.0
    assert best_f1_pa_k(s, y, 0.39).f1 == 1.0


def test_pa_k_auc_hand():
    s = [0.1, 0.9, 0.1, 0.1, 0.6, 0.2]
    y = [0, 1, 1, 1, 0, 0]
    # best F1(K): 1.0 while 1/3 > K (K = 0, .1, .2, .3), then 2/3 (K = .4 ... 1)
    # trapezoid on the 0.1 grid: 0.3*1 + 0.1*(1 + 2/3)/2 + 0.6*(2/3) = 0.3 + 0.08333 + 0.4
    assert pa_k_auc(s, y) == pytest.approx(0.3 + 0.1 * (5 / 3) / 2 + 0.4)


def test_pa_k_rejects_bad_k():
    with pytest.raises(ValueError):
        best_f1_pa_k([0.1], [1], k=1.5)


def test_pa_k_respects_groups():
    # labels 1,1 | 1,1 across a series boundary: without groups one segment of 4, with groups
    # two segments of 2.  Scores flag only row 0.
    s = [0.9, 0.1, 0.1, 0.1, 0.5]
    y = [1, 1, 1, 1, 0]
    # PA, one segment: t=.9 credits all 4 -> 1.0
    assert best_f1_point_adjusted(s, y).f1 == 1.0
    # PA, two segments (groups a,a,b,b,b): t=.9 credits rows 0,1 -> TP2 FP0 -> 4/6 ;
    # t=.1 flags all: TP4 FP1 -> 8/9 (best)
    assert best_f1_point_adjusted(s, y, groups=list("aabbb")).f1 == pytest.approx(8 / 9)


# --------------------------------------------------------------------------------------------
# range-AUC / VUS
# --------------------------------------------------------------------------------------------


def test_range_auc_hand_with_buffer():
    # labels [0,0,1,0,0,0], window 2 -> buffer of 1 row each side, weight sqrt(1 - 1/2)
    # soft = [0, .7071, 1, .7071, 0, 0]; P = 1; P' = (1 + 2.4142) / 2 = 1.7071
    # thresholds (all distinct) .9 .5 .4 .3 .2 .1:
    #   t=.9: TP=1      TPR=1/P'=.5858  FPR=0             prec=1
    #   t=.5: TP=1.7071 TPR=1           FPR=.2929/4.2929  prec=.8536
    #   lower thresholds keep TPR=1
    # PR  = .5858*1 + (1-.5858)*(1+.8536)/2
    # ROC = FPR(.5)*(.5858+1)/2 + (1-FPR(.5))*1
    s = [0.1, 0.5, 0.9, 0.2, 0.3, 0.4]
    y = [0, 0, 1, 0, 0, 0]
    p_new = 1 + SQRT2 / 2
    tpr1 = 1 / p_new
    prec2 = p_new / 2
    fpr2 = (2 - p_new) / (6 - p_new)
    r = range_auc(s, y, window=2, n_thresholds=None)
    assert r.pr == pytest.approx(tpr1 + (1 - tpr1) * (1 + prec2) / 2)
    assert r.roc == pytest.approx(fpr2 * (tpr1 + 1) / 2 + (1 - fpr2))


def test_vus_is_mean_of_range_auc_and_default_window():
    rng = np.random.default_rng(3)
    y = np.zeros(80, int)
    y[10:14] = 1
    y[50:57] = 1
    s = rng.random(80) + 0.6 * y
    assert default_vus_window(y) == 7
    v = vus(s, y)
    assert v.max_window == 7
    per = [range_auc(s, y, w) for w in range(8)]
    assert v.pr == pytest.approx(np.mean([r.pr for r in per]))
    assert v.roc == pytest.approx(np.mean([r.roc for r in per]))


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=3, max_size=40),
    st.integers(0, 9),
    st.sampled_from([250, None, 7]),
)
def test_range_auc_matches_literal_reference(rows, window, n_thresholds):
    s = np.array([r[0] for r in rows], float)  # few distinct values: many ties
    y = np.array([r[1] for r in rows], int)
    if y.sum() == 0 or y.sum() == y.size:
        return
    got = range_auc(s, y, window, n_thresholds=n_thresholds)
    roc, pr = range_auc_slow(s, y, window, n_thresholds)
    assert got.roc == pytest.approx(roc, abs=1e-12)
    assert got.pr == pytest.approx(pr, abs=1e-12)


def test_range_auc_groups_far_from_boundary_change_nothing():
    rng = np.random.default_rng(5)
    y = np.zeros(60, int)
    y[10:13] = 1
    y[45:48] = 1
    s = rng.random(60)
    g = ["a"] * 30 + ["b"] * 30
    a = range_auc(s, y, 6)
    b = range_auc(s, y, 6, groups=g)
    assert (a.roc, a.pr) == pytest.approx((b.roc, b.pr))


def test_range_auc_buffer_does_not_cross_groups():
    # a segment ending at a series boundary: with groups its buffer stops there
    y = [0, 0, 1, 1, 0, 0]
    s = [0.1, 0.2, 0.9, 0.8, 0.7, 0.3]
    grouped = range_auc(s, y, 4, n_thresholds=None, groups=list("aaaabb"))
    # same as evaluating the first series alone for the buffer, i.e. the right buffer
    # rows (4, 5) get no soft label: flagging row 4 (0.7) is a plain false positive
    alone = range_auc_slow([0.1, 0.2, 0.9, 0.8, 0.7, 0.3], [0, 0, 1, 1, 0, 0], 4, None)
    assert grouped.pr < alone[1]
    # without a buffer, the boundary changes nothing
    plain = range_auc(s, y, 1, n_thresholds=None, groups=list("aaaabb"))
    assert (plain.roc, plain.pr) == pytest.approx(range_auc_slow(s, y, 1, None))


# --------------------------------------------------------------------------------------------
# NAB
# --------------------------------------------------------------------------------------------


def test_nab_windows_hand():
    y = np.zeros(100, int)
    y[20:25] = 1
    y[70] = 1
    # width = int(0.1 * 100 / 2) = 5, half 2
    # segment 20..24 (centre 22): [min(20, 20), max(24, 24)] ; point 70: [68, 72]
    assert nab_windows(y) == [(20, 25), (68, 73)]
    y = np.zeros(40, int)
    y[[10, 12]] = 1
    # width int(4 / 2) = 2, half 1: [9, 11] and [11, 13] overlap -> merged [9, 13]
    assert nab_windows(y) == [(9, 14)]
    # per series: each of 20 rows with one anomaly -> width 2 each
    assert nab_windows(
        [0] * 5 + [1] + [0] * 14 + [0] * 10 + [1] + [0] * 9, groups=[0] * 20 + [1] * 20
    ) == [
        (4, 7),
        (29, 32),
    ]


LABELS_20 = [0] * 10 + [1] + [0] * 9  # window rows 9..11 (width 3)


def _det(n, *rows):
    d = np.zeros(n, int)
    d[list(rows)] = 1
    return d


def test_nab_hand_cases():
    # first row of the window: A_TP * S(-1) / S(-1) = 1 -> (1 + 1) / (1 + 1) = 100
    assert nab_score(_det(20, 9), LABELS_20).score == pytest.approx(100.0)
    # several detections in a window: only the best (first) counts
    assert nab_score(_det(20, 9, 10, 11), LABELS_20).score == pytest.approx(100.0)
    # row 10: position -(11 - 10 + 1) / 3 = -2/3 -> S(-2/3) / S(-1) = 0.94374
    r = nab_score(_det(20, 10), LABELS_20)
    tp = scaled_sigmoid(-2 / 3) / scaled_sigmoid(-1)
    assert r.raw == pytest.approx(tp)
    assert r.score == pytest.approx(100 * (tp + 1) / 2)
    assert (r.tp, r.fn, r.fp) == (1, 0, 0)
    # FP before any window: S(3) * 0.11 = -0.11; window missed: -1 -> raw -1.11 -> -5.5
    r = nab_score(_det(20, 0), LABELS_20)
    assert r.raw == pytest.approx(-1.11)
    assert r.score == pytest.approx(-5.5)
    assert (r.tp, r.fn, r.fp) == (0, 1, 1)
    # FP two rows after the window: (13 - 11) / (3 - 1) = 1 -> S(1) * 0.11 = -0.10853
    r = nab_score(_det(20, 13), LABELS_20)
    assert r.raw == pytest.approx(-1 + 0.11 * scaled_sigmoid(1.0))
    # null detector 0, and nan without windows
    assert nab_score(np.zeros(20), LABELS_20).score == 0.0
    assert math.isnan(nab_score(np.zeros(5), np.zeros(5)).score)


def test_nab_probation_drops_early_detections_and_windows():
    # probation 12 rows: the window 9..11 starts inside it and is dropped; the detection at 9
    # is ignored; the detection at 15 is a FP before any (remaining) window
    r = nab_score(_det(20, 9, 15), LABELS_20, probation=12)
    assert r.n_windows == 0
    assert r.raw == pytest.approx(-0.11)


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), min_size=10, max_size=80),
    st.sampled_from([0.1, 0.25]),
)
def test_nab_matches_literal_sweeper(rows, fraction):
    y = np.array([r[0] for r in rows], int)
    d = np.array([r[1] for r in rows], int)
    windows = [(a, b - 1) for a, b in nab_windows(y, window_fraction=fraction)]
    got = nab_score(d, y, window_fraction=fraction)
    assert got.raw == pytest.approx(nab_slow(d, windows), abs=1e-12)


# --------------------------------------------------------------------------------------------
# time to detect
# --------------------------------------------------------------------------------------------


def test_time_to_detect_hand():
    y = [0, 1, 1, 1, 0, 1, 1, 0, 1, 1]
    d = [1, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    ts = [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000, 90_000]
    # segments (1,4) (5,7) (8,10): first detections 3 and 5, none in the third.
    # delays 2 and 0 rows; 20 s and 0 s.  Detection at row 0 is before every segment.
    r = time_to_detect(d, y, ts)
    assert (r.n_segments, r.n_detected) == (3, 2)
    assert r.detected_fraction == pytest.approx(2 / 3)
    assert (r.mean_rows, r.median_rows) == (1.0, 1.0)
    assert (r.mean_seconds, r.median_seconds) == (10.0, 10.0)
    r = time_to_detect(np.zeros(10), y)
    assert r.detected_fraction == 0.0
    assert math.isnan(r.mean_rows) and math.isnan(r.mean_seconds)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------

labels_st = st.lists(st.booleans(), min_size=2, max_size=60).filter(lambda v: 0 < sum(v) < len(v))


@settings(max_examples=80, deadline=None, database=None)
@given(labels_st, st.integers(0, 2**32 - 1))
def test_perfect_and_reversed_scores(labels, seed):
    y = np.array(labels, int)
    noise = np.random.default_rng(seed).random(y.size) * 0.5
    perfect = y + noise  # every positive above every negative
    assert roc_auc(perfect, y) == 1.0
    assert roc_auc(-perfect, y) == 0.0
    assert average_precision(perfect, y) == pytest.approx(1.0)
    assert best_f1(perfect, y).f1 == 1.0
    assert best_f1_pa_k(perfect, y).f1 == 1.0
    r = range_auc(perfect, y, 0)
    assert (r.roc, r.pr) == pytest.approx((1.0, 1.0))


@settings(max_examples=80, deadline=None, database=None)
@given(labels_st, st.lists(st.integers(0, 5), min_size=60, max_size=60))
def test_rank_metrics_properties(labels, raw):
    y = np.array(labels, int)
    s = np.array(raw[: y.size], float)  # heavy ties
    auc = roc_auc(s, y)
    assert roc_auc(-s, y) == pytest.approx(1 - auc)
    assert 0.0 <= average_precision(s, y) <= 1.0
    # invariant to strictly increasing transforms
    t = np.exp(s / 3.0) * 7 - 2
    assert roc_auc(t, y) == pytest.approx(auc)
    assert average_precision(t, y) == pytest.approx(average_precision(s, y))
    assert best_f1(t, y).f1 == pytest.approx(best_f1(s, y).f1)
    assert vus(t, y).pr == pytest.approx(vus(s, y).pr)
    # NaN rows are excluded, wherever they are
    with_nan = np.insert(s, [0, y.size // 2], np.nan)
    y_nan = np.insert(y, [0, y.size // 2], [1, 0])
    assert roc_auc(with_nan, y_nan) == pytest.approx(auc)
    assert best_f1(with_nan, y_nan).f1 == pytest.approx(best_f1(s, y).f1)


@settings(max_examples=80, deadline=None, database=None)
@given(
    labels_st,
    st.lists(st.integers(0, 6), min_size=60, max_size=60),
    st.sampled_from([0.0, 0.2, 0.5, 1.0]),
)
def test_pa_k_matches_brute_force_and_is_monotone(labels, raw, k):
    y = np.array(labels, int)
    s = np.array(raw[: y.size], float)
    assert best_f1_pa_k(s, y, k).f1 == pytest.approx(pa_k_slow(s, y, k))
    f0, f20, f100 = (best_f1_pa_k(s, y, kk).f1 for kk in (0.0, 0.2, 1.0))
    assert f0 >= f20 - 1e-12 and f20 >= f100 - 1e-12
    assert f100 == pytest.approx(best_f1(s, y).f1)


def test_random_scores_give_chance_level():
    y = np.zeros(2000, int)
    y[::7] = 1
    b = random_baseline(y, n_seeds=10)
    assert b["roc_auc"]["mean"] == pytest.approx(0.5, abs=0.03)
    assert b["pr_auc"]["mean"] == pytest.approx(y.mean(), abs=0.03)
    assert b["roc_auc"]["std"] > 0
    assert not any(k.endswith("_threshold") for k in b)


def test_random_baseline_matches_detection_rate():
    y = np.zeros(300, int)
    y[100:120] = 1
    b = random_baseline(y, n_flagged=30, n_seeds=10)
    # exactly 30 flagged rows: precision * 30 == TP == recall * 20 in every run
    assert b["detector_precision"]["mean"] * 30 == pytest.approx(b["detector_recall"]["mean"] * 20)


# --------------------------------------------------------------------------------------------
# sklearn cross-checks
# --------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, database=None)
@given(labels_st, st.lists(st.integers(0, 9), min_size=60, max_size=60))
def test_against_sklearn(labels, raw):
    metrics = pytest.importorskip("sklearn.metrics")
    y = np.array(labels, int)
    s = np.array(raw[: y.size], float) / 3.0
    assert roc_auc(s, y) == pytest.approx(metrics.roc_auc_score(y, s))
    assert average_precision(s, y) == pytest.approx(metrics.average_precision_score(y, s))
    precision, recall, _ = metrics.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    assert best_f1(s, y).f1 == pytest.approx(f1.max())


# --------------------------------------------------------------------------------------------
# aggregate entry points
# --------------------------------------------------------------------------------------------


def test_detection_metrics_and_evaluate_detection():
    rng = np.random.default_rng(0)
    y = np.zeros(200, int)
    y[50:60] = 1
    y[150:155] = 1
    s = rng.random(200) + y
    s[[5, 55]] = np.nan
    det = (s > 1.5).astype(int)
    ts = np.arange(200) * 1000
    m = detection_metrics(s, y, det, ts)
    for key in (
        "roc_auc",
        "pr_auc",
        "f1_best",
        "f1_pa_k20",
        "f1_point_adjusted_optimistic",
        "pa_k_auc",
        "vus_pr",
        "vus_roc",
        "nab_score",
        "ttd_mean_seconds",
        "detector_f1",
        "detected_segment_fraction",
    ):
        assert key in m
    assert m["roc_auc"] == pytest.approx(roc_auc(s, y))
    r = evaluate_detection(s, y, det, ts, n_seeds=10)
    assert (r["n_rows"], r["n_scored"], r["n_excluded_nonfinite"]) == (200, 198, 2)
    # row 55 (NaN) is removed before positions are taken: rows 50..59 stay one segment of 9
    assert r["n_positive"] == 14 and r["n_segments"] == 2
    assert r["vus_max_window"] == 9
    assert r["model"]["roc_auc"] > r["random"]["roc_auc"]["mean"]
    assert set(r["random"]) <= set(r["model"])
