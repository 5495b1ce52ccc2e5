"""The headline numbers of ``streamgen evaluate`` and the plot helpers that make them visible."""

from __future__ import annotations

import numpy as np

from streamgen.evaluation import report
from streamgen.evaluation.forecast import ActualSeries, Continuation, join_continuations
from streamgen.evaluation.summary import headline

HOUR = 3_600_000


def test_headline_counts_segments_false_alerts_and_delay_per_key():
    # key a: a segment at rows 2-3 flagged one row late, a false run at rows 8-9;
    # key b: a one-row segment flagged 2 rows after it (within the grace), nothing false.
    y = [0, 0, 1, 1, 0, 0, 0, 0, 0, 0] + [0, 1, 0, 0, 0, 0]
    d = [0, 0, 0, 1, 0, 0, 0, 0, 1, 1] + [0, 0, 0, 1, 0, 0]
    g = ["a"] * 10 + ["b"] * 6
    ts = [i * HOUR for i in range(10)] + [i * HOUR for i in range(6)]
    s = np.arange(16, dtype=float)
    s[5] = np.nan  # left out, like a dead letter
    h = headline(s, y, d, ts, g, roc_auc=0.9, pr_auc=0.4, grace_rows=2)
    assert (h["rows"], h["keys"], h["segments"], h["segments_detected"]) == (15, 2, 2, 2)
    assert h["false_alerts"] == 1  # rows 8-9 of a, not b's late flag
    assert h["false_alerts_per_day"] == 24 / 9  # one in the 9 h both keys span
    assert h["ttd_median_rows"] == 1.5 and h["ttd_median_seconds"] == 1.5 * 3600
    assert h["pr_auc_random"] == 3 / 15
    strict = headline(s, y, d, ts, g, grace_rows=0)
    assert strict["segments_detected"] == 1 and strict["false_alerts"] == 2
    without = headline(s, y, None, ts, g)
    assert without["segments_detected"] is None and without["false_alerts"] is None


def test_a_one_row_anomaly_is_shaded_wide_enough_to_see():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(3000, dtype=float)
    labels = np.zeros(3000, dtype=bool)
    labels[1500] = True
    report.shade_labels(ax, x, labels)
    (patch,) = ax.patches
    left, right = patch.get_x(), patch.get_x() + patch.get_width()
    assert right - left >= 3000 * report.MIN_SHADE_FRACTION - 1e-9
    assert left < 1500 < right


def test_robust_ylim_clips_one_outlier_and_says_so():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    v = np.sin(np.arange(500) / 10.0)
    v[250] = 1e6
    ax.plot(v)
    report.robust_ylim(ax, v, x=np.arange(500.0))
    assert ax.get_ylim()[1] < 10
    assert any("clipped y-axis (triangles): 1 above (extreme 1e+06)" in t.get_text()
               for t in ax.texts)


def test_continuation_panels_skip_the_cold_start_and_the_end_of_the_stream():
    n, h = 100, 4
    actuals = {k: ActualSeries.from_rows(np.arange(n), np.sin(np.arange(n) / 3.0)) for k in "ab"}
    conts = [Continuation.make(k, t, np.zeros(h)) for k in "ab" for t in range(n)]
    joined = join_continuations(conts, actuals, 8)
    pick = report.pick_continuations(joined, actuals, 4)
    assert len(pick) == 4
    assert {joined.keys[i] for i in pick} == {"a", "b"}
    for i in pick:
        assert joined.anchor[i] >= max(3 * h, n // 5)  # past the cold start
        assert joined.anchor[i] + h < n  # every step has an actual row
