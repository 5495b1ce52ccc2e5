"""Forecast join, naive baselines and error metrics on tiny hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamgen.evaluation.forecast import (
    ActualSeries,
    Continuation,
    estimate_period,
    evaluate_forecasts,
    forecast_metrics,
    join_continuations,
)


def actual(values, ts=None):
    values = np.asarray(values, float)
    ts = np.arange(1, len(values) + 1) if ts is None else ts
    return ActualSeries.from_rows(ts, values)


def test_join_next_rows_partial_and_before_first_row():
    act = {"a": actual([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])}  # ts 1..6
    conts = [
        Continuation.make("a", 3, [13.5, 14.5, 15.5]),  # rows ts 4, 5, 6
        Continuation.make("a", 5, [16.0, 17.0, 18.0]),  # only ts 6 arrived
        Continuation.make("a", 0, [10.0]),  # before the first row: no anchor
        Continuation.make("zz", 3, [1.0]),  # unknown key
    ]
    j = join_continuations(conts, act, period=1)
    assert j.keys == ["a", "a", "a"]
    assert j.index.tolist() == [0, 1, 2]
    assert (j.n_unmatched, j.unmatched_keys) == (1, ["zz"])
    assert j.anchor.tolist() == [2, 4, -1]
    assert j.actual[0, :, 0].tolist() == [13.0, 14.0, 15.0]
    assert j.actual[1, 0, 0] == 15.0 and np.isnan(j.actual[1, 1:, 0]).all()
    assert j.naive["last_value"][0, :, 0].tolist() == [12.0, 12.0, 12.0]
    assert np.isnan(j.naive["last_value"][2]).all()
    # common mask: row 0 all 3 steps, row 1 step 1 only, row 2 nothing (no naive)
    assert j.common_mask()[:, :, 0].sum(axis=1).tolist() == [3, 1, 0]


def test_anchor_between_rows_and_unsorted_actuals():
    # actual rows given out of order; ts 25 lies between rows 20 and 30
    act = {"k": ActualSeries.from_rows([30, 10, 20, 40], [3.0, 1.0, 2.0, 4.0])}
    j = join_continuations([Continuation.make("k", 25, [3.0, 4.0])], act, period=1)
    assert j.naive["last_value"][0, :, 0].tolist() == [2.0, 2.0]
    assert j.actual[0, :, 0].tolist() == [3.0, 4.0]


def test_seasonal_naive_wraps_past_one_period():
    # values 0 1 2 0 1 2 0 1 (period 3), anchor at index 4 (value 1, ts 5)
    act = {"a": actual([0, 1, 2, 0, 1, 2, 0, 1])}
    j = join_continuations([Continuation.make("a", 5, [0, 0, 0, 0])], act, period=3)
    # step h repeats index 4 + h - 3 * ceil(h / 3): h=1..3 -> 2, 3, 4 ; h=4 -> 5 - ... = 2
    # values at 2, 3, 4, 2 -> 2, 0, 1, 2 ; actual next rows: idx 5, 6, 7 -> 2, 0, 1 (+ missing)
    assert j.naive["seasonal_naive"][0, :, 0].tolist() == [2.0, 0.0, 1.0, 2.0]
    assert j.actual[0, :3, 0].tolist() == [2.0, 0.0, 1.0]


def test_seasonal_naive_undefined_early_drops_points_for_everyone():
    act = {"a": actual([1, 2, 3, 4, 5, 6])}
    # anchor index 0 (ts 1), period 3: step h repeats index 0 + h - 3 -> -2, -1 (undefined), 0
    j = join_continuations([Continuation.make("a", 1, [2.0, 3.0, 5.0])], act, period=3)
    seasonal = j.naive["seasonal_naive"][0, :, 0]
    assert np.isnan(seasonal[:2]).all() and seasonal[2] == 1.0
    m = forecast_metrics(j)
    # only step 3 is compared, for the model too: |5 - 4| = 1 ; last value |1 - 4| = 3
    assert m["n_points"] == 1 and m["n_points_dropped"] == 2
    assert m["model"]["mae_by_step"][2] == 1.0 and math.isnan(m["model"]["mae_by_step"][0])
    assert m["model"]["mae"] == 1.0 and m["last_value"]["mae"] == 3.0


def test_metrics_hand_computed_per_step_and_ratios():
    # two channels; two continuations of H=2 on a linear series (ts 1..6)
    vals = np.array([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14], [5, 15]], float)
    act = {"a": ActualSeries.from_rows(np.arange(1, 7), vals)}
    conts = [
        Continuation.make("a", 2, [[2, 12], [3, 13]]),  # perfect
        Continuation.make("a", 4, [[4, 14], [7, 15]]),  # step-2 channel-0 error 2
    ]
    m = evaluate_forecasts(conts, act, period=1)
    # model abs errors: step1: 0 0 0 0 -> 0 ; step2: 0 0 2 0 -> 0.5
    assert m["model"]["mae_by_step"] == pytest.approx([0.0, 0.5])
    assert m["model"]["mae"] == pytest.approx(2 / 8)
    assert m["model"]["rmse"] == pytest.approx(math.sqrt(4 / 8))
    assert m["model"]["rmse_by_step"] == pytest.approx([0.0, 1.0])
    # last value (period 1 == seasonal): errors step1: 1 each, step2: 2 each
    assert m["last_value"]["mae_by_step"] == pytest.approx([1.0, 2.0])
    assert m["last_value"]["mae"] == pytest.approx(1.5)
    assert m["seasonal_naive"]["mae"] == pytest.approx(1.5)
    assert m["last_value"]["rmse"] == pytest.approx(math.sqrt((4 * 1 + 4 * 4) / 8))
    assert m["ratio_mae"] == pytest.approx(0.25 / 1.5)
    assert m["best_naive_mae"] == "last_value"
    assert m["ratio_mae_by_step"] == pytest.approx([0.0, 0.25])
    assert (m["horizon"], m["channels"], m["n_points"]) == (2, 2, 8)


def test_ratio_with_perfect_naive_is_inf():
    act = {"a": actual([5.0, 5.0, 5.0, 5.0])}
    m = evaluate_forecasts([Continuation.make("a", 2, [6.0, 6.0])], act, period=1)
    assert m["last_value"]["mae"] == 0.0
    assert m["ratio_mae"] == math.inf


def test_estimated_period_used_per_key():
    t = np.arange(120)
    act = {
        "s7": actual(np.sin(2 * np.pi * t / 7)),
        "flat": actual(np.random.default_rng(1).normal(size=120)),
    }
    conts = [Continuation.make("s7", 100, [0.0]), Continuation.make("flat", 100, [0.0])]
    j = join_continuations(conts, act)
    assert j.periods == {"flat": None, "s7": 7}
    # flat: no period -> seasonal naive == last value
    assert j.naive["seasonal_naive"][1, 0, 0] == j.naive["last_value"][1, 0, 0]


def test_estimate_period_cases():
    t = np.arange(300)
    assert estimate_period(np.sin(2 * np.pi * t / 24)) == 24
    two = np.c_[np.sin(2 * np.pi * t / 10), np.cos(2 * np.pi * t / 10) + 0.1]
    assert estimate_period(two) == 10
    assert estimate_period(np.ones(50)) is None
    assert estimate_period([1.0, 2.0, 3.0]) is None


def _strongest_lag(x: np.ndarray, max_lag: int) -> int:
    """The "strongest" rule by its definition: z-score each channel, average ``z_t z_(t-lag)``
    over all pairs of a lag, search from the first negative lag (lag 2 without one)."""
    z = (x - x.mean(0)) / x.std(0)
    ac = np.array([np.mean(z[lag:] * z[:-lag]) for lag in range(1, max_lag + 1)])
    below = np.flatnonzero(ac < 0)
    start = int(below[0]) if len(below) else 1
    return start + 1 + int(np.argmax(ac[start:]))


def test_estimate_period_strongest_rule_matches_its_definition():
    rng = np.random.default_rng(1)
    t = np.arange(400)[:, None]
    for _ in range(50):
        periods = rng.uniform(5, 60, size=(1, 2))
        x = np.sin(2 * np.pi * t / periods).sum(1, keepdims=True) + rng.normal(size=(400, 2))
        max_lag = int(rng.integers(3, 200))
        got = estimate_period(x, max_lag=max_lag, min_acf=None, rule="strongest")
        assert got == _strongest_lag(x, max_lag)
    # Seasons of 7 and 23.3 rows: the biased ACF (which shrinks long lags) peaks at 21, where
    # they roughly realign; 70 rows apart (10 x 7, 3 x 23.3) the values repeat more closely.
    two = np.sin(2 * np.pi * t[:, 0] / 7) + np.sin(2 * np.pi * t[:, 0] / 23.3)
    assert estimate_period(two, max_lag=150) == 21
    assert estimate_period(two, max_lag=150, min_acf=None, rule="strongest") == 70
    with pytest.raises(ValueError, match="rule"):
        estimate_period(two, rule="best")


def test_channel_mismatch_is_an_error():
    act = {"a": actual([[1.0, 2.0], [3.0, 4.0]])}
    with pytest.raises(ValueError, match="channels"):
        join_continuations([Continuation.make("a", 1, [1.0])], act)
    with pytest.raises(ValueError, match="channels"):
        join_continuations(
            [Continuation.make("a", 1, [[1.0, 2.0]]), Continuation.make("a", 1, [1.0])], act
        )


def test_nonfinite_actual_rows_are_skipped():
    # the NaN row (ts 3) was dead-lettered upstream: the next rows after ts 2 are ts 4, 5
    act = {"a": ActualSeries.from_rows([1, 2, 3, 4, 5], [1.0, 2.0, np.nan, 4.0, 5.0])}
    j = join_continuations([Continuation.make("a", 2, [4.0, 5.0])], act, period=1)
    assert j.actual[0, :, 0].tolist() == [4.0, 5.0]


# --------------------------------------------------------------------------------------------
# spread: one std of the forecast error, checked against the errors
# --------------------------------------------------------------------------------------------


def spread_case():
    """Flat actuals (ts 1..6, all 0), so every naive is exact and each error is the forecast.

    ts 2: forecast [1, 2] spread [1, 1]       -> |e| 1 (<= 1 sd), 2 (<= 2 sd only)
    ts 3: forecast [0.5, -3] spread [0.25, 1] -> |e| 0.5 (<= 2 sd only), 3 (outside 2 sd)
    ts 4: forecast [0, 0], no spread          -> compared, but not in the spread check
    """
    act = {"a": actual(np.zeros(6))}
    conts = [
        Continuation.make("a", 2, [1.0, 2.0], [1.0, 1.0]),
        Continuation.make("a", 3, [0.5, -3.0], [[0.25], [1.0]]),
        Continuation.make("a", 4, [0.0, 0.0]),
    ]
    return act, conts


def test_spread_coverage_hand_computed():
    act, conts = spread_case()
    m = evaluate_forecasts(conts, act, period=1)
    assert m["n_points"] == 6  # the spread-less continuation still counts for MAE/RMSE
    sp = m["spread"]
    assert sp["n_points"] == 4
    assert sp["coverage_1sd"] == 0.25  # only |e| = 1 vs spread 1
    assert sp["coverage_2sd"] == 0.75  # all but |e| = 3 vs spread 1
    assert sp["coverage_1sd_by_step"] == [0.5, 0.0]
    assert sp["coverage_2sd_by_step"] == [1.0, 0.5]
    assert sp["mean_spread"] == pytest.approx((1 + 1 + 0.25 + 1) / 4)
    assert sp["rms_spread"] == pytest.approx(math.sqrt((1 + 1 + 0.0625 + 1) / 4))
    assert sp["rmse"] == pytest.approx(math.sqrt((1 + 4 + 0.25 + 9) / 4))
    assert sp["rmse_over_rms_spread"] == pytest.approx(math.sqrt(14.25 / 3.0625))
    # step 1: errors 1, 0.5 vs spreads 1, 0.25 ; step 2: errors 2, 3 vs spreads 1, 1
    assert sp["rmse_over_rms_spread_by_step"] == pytest.approx(
        [math.sqrt(1.25 / 1.0625), math.sqrt(13 / 2)]
    )
    assert sp["nominal"]["coverage_1sd"] == pytest.approx(0.6827, abs=1e-4)
    assert sp["nominal"]["coverage_2sd"] == pytest.approx(0.9545, abs=1e-4)


def test_join_aligns_spread_with_nan_where_missing():
    act, conts = spread_case()
    j = join_continuations([Continuation.make("zz", 1, [1.0], [1.0]), *conts], act, period=1)
    assert j.spread is not None and j.spread.shape == j.forecast.shape == (3, 2, 1)
    assert j.spread[:2, :, 0].tolist() == [[1.0, 1.0], [0.25, 1.0]]
    assert np.isnan(j.spread[2]).all()
    # a shorter continuation: its missing steps are nan like its forecast
    short = join_continuations(
        [
            Continuation.make("a", 2, [1.0, 2.0], [1.0, 1.0]),
            Continuation.make("a", 3, [0.0], [3.0]),
        ],
        act,
        period=1,
    )
    assert short.spread[1, 0, 0] == 3.0 and np.isnan(short.spread[1, 1, 0])


def test_without_spread_the_block_is_none():
    act, conts = spread_case()
    j = join_continuations(conts[2:], act, period=1)
    assert j.spread is None
    assert forecast_metrics(j)["spread"] is None
    # spreads only on continuations whose key is unknown: nothing joined carries one
    j = join_continuations([Continuation.make("zz", 1, [1.0], [1.0]), conts[2]], act, period=1)
    assert j.spread is None and forecast_metrics(j)["spread"] is None


def test_spread_uses_the_common_mask():
    # anchor index 0, period 3: seasonal naive undefined for steps 1-2 (see above), so only
    # step 3 is compared, for the spread too; step 3's error |5 - 4| = 1 is within 1 spread
    act = {"a": actual([1, 2, 3, 4, 5, 6])}
    cont = Continuation.make("a", 1, [20.0, 30.0, 5.0], [0.1, 0.1, 1.0])
    m = evaluate_forecasts([cont], act, period=3)
    assert m["n_points"] == 1 and m["spread"]["n_points"] == 1
    assert m["spread"]["coverage_1sd"] == 1.0
    assert m["spread"]["coverage_2sd_by_step"][2] == 1.0
    assert math.isnan(m["spread"]["coverage_2sd_by_step"][0])


def test_spread_with_no_comparable_points_is_nan_not_missing():
    # spreads present but no actual arrived after ts 6: the block says 0 points
    act = {"a": actual(np.zeros(6))}
    m = evaluate_forecasts([Continuation.make("a", 6, [1.0], [1.0])], act, period=1)
    assert m["spread"]["n_points"] == 0
    assert math.isnan(m["spread"]["coverage_2sd"])
    assert math.isnan(m["spread"]["rmse_over_rms_spread"])


def test_zero_spread():
    act = {"a": actual(np.zeros(6))}
    exact = evaluate_forecasts([Continuation.make("a", 2, [0.0, 1.0], [0.0, 0.0])], act, 1)
    # |e| <= k * 0 holds only for the exact step; the ratio is infinite
    assert exact["spread"]["coverage_1sd"] == 0.5
    assert exact["spread"]["rmse_over_rms_spread"] == math.inf
    perfect = evaluate_forecasts([Continuation.make("a", 2, [0.0], [0.0])], act, 1)
    assert perfect["spread"]["coverage_2sd"] == 1.0
    assert math.isnan(perfect["spread"]["rmse_over_rms_spread"])


@pytest.mark.parametrize(
    ("spread", "message"),
    [
        ([1.0], r"spread has shape \(1, 1\) but the forecast \(2, 1\)"),
        ([[1.0, 1.0], [1.0, 1.0]], r"spread has shape \(2, 2\)"),
        ([1.0, -0.5], "finite and >= 0, got -0.5 at step 2 channel 0"),
        ([float("nan"), 1.0], "finite and >= 0, got nan at step 1"),
        ([1.0, float("inf")], "finite and >= 0, got inf at step 2"),
        ([None, 1.0], "finite and >= 0, got nan"),
    ],
)
def test_bad_spread_is_rejected(spread, message):
    with pytest.raises(ValueError, match=message):
        Continuation.make("a", 0, [1.0, 2.0], spread)


def test_spread_two_channels_shape_kept():
    c = Continuation.make("a", 0, [[1.0, 2.0]], [[0.5, 0.25]])
    assert c.spread is not None and c.spread.tolist() == [[0.5, 0.25]]
    assert Continuation.make("a", 0, [[1.0, 2.0]]).spread is None
