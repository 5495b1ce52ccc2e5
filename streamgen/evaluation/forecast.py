"""Forecast accuracy of continuations against what actually arrived, next to naive forecasts.

A continuation forecasts the ``H`` rows of its key that follow its anchor timestamp ``ts`` (the
timestamp of the last observed point).  It is joined with the actual rows of that key: the
*next H rows with a timestamp greater than ts*, in timestamp order.  On exactly the same points
two naive forecasts are scored:

* last value: the actual value at the anchor (the last row with timestamp <= ts);
* seasonal naive with period ``m``: step ``h`` repeats the actual value ``m * ceil(h / m)`` rows
  before the forecast row.  ``m`` is given, or estimated per key from the autocorrelation of its
  actual values (:func:`estimate_period`); with no clear period ``m = 1``, i.e. last value.

Errors are compared only on points where the actual value, the model forecast and every naive
forecast are all defined, so the ratios compare like with like.

A continuation may carry a ``spread`` (H, C): one standard deviation of its forecast error, in
the data's units.  :func:`forecast_metrics` then checks whether that spread has the right size
(:func:`spread_metrics`): how often the error falls within one and two spreads, against the
Gaussian 68.3 % and 95.4 %.  Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ActualSeries",
    "Continuation",
    "JoinedForecasts",
    "estimate_period",
    "evaluate_forecasts",
    "forecast_metrics",
    "join_continuations",
    "spread_metrics",
]

FloatArray = NDArray[np.float64]

NAIVE_METHODS = ("last_value", "seasonal_naive")

#: Share of a Gaussian within k standard deviations of its mean, k = 1, 2: what
#: ``coverage_1sd`` / ``coverage_2sd`` should be when the spread is the error's true std.
NOMINAL_COVERAGE = {
    "coverage_1sd": math.erf(1 / math.sqrt(2)),  # 0.6827
    "coverage_2sd": math.erf(2 / math.sqrt(2)),  # 0.9545
}


@dataclass(frozen=True, slots=True)
class ActualSeries:
    """Actual rows of one key: ``ts_ms`` (n,) and ``values`` (n, C), sorted by timestamp."""

    ts_ms: NDArray[np.int64]
    values: FloatArray

    @classmethod
    def from_rows(cls, ts_ms: ArrayLike, values: ArrayLike) -> ActualSeries:
        """Build from unsorted rows; sorts stably by timestamp and drops non-finite rows.

        Rows with a non-finite value are dropped because the pipeline never scores them: they
        are not among the "next H rows" a model sees.

        Examples
        --------
        >>> a = ActualSeries.from_rows([3, 1, 2], [[30.0], [10.0], [float("nan")]])
        >>> a.ts_ms.tolist(), a.values[:, 0].tolist()
        ([1, 3], [10.0, 30.0])
        """
        ts = np.asarray(ts_ms, dtype=np.int64).reshape(-1)
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim == 1:
            vals = vals[:, None]
        if vals.shape[0] != ts.size:
            raise ValueError(f"{ts.size} timestamps but {vals.shape[0]} value rows")
        keep = np.isfinite(vals).all(axis=1)
        ts, vals = ts[keep], vals[keep]
        order = np.argsort(ts, kind="mergesort")
        return cls(ts[order], vals[order])


@dataclass(frozen=True, slots=True)
class Continuation:
    """One forecast: ``forecast`` is (H, C) for the H rows after ``ts_ms`` of ``key``.

    ``spread`` (H, C), when known, is one standard deviation of each point's forecast error in
    the data's units (``streamgen score`` writes each step's residual RMS); ``None`` otherwise.
    """

    key: str
    ts_ms: int
    forecast: FloatArray
    spread: FloatArray | None = None

    @classmethod
    def make(
        cls, key: str, ts_ms: int, forecast: ArrayLike, spread: ArrayLike | None = None
    ) -> Continuation:
        """Accept H values (C = 1) or H lists of C values, for the forecast and the spread.

        The spread must have the forecast's shape and be finite and >= 0: a spread that is
        wrong there cannot be checked against anything, and silently dropping it would bias
        the coverage towards the rows that happened to be well formed.

        Examples
        --------
        >>> Continuation.make("a", 0, [1.0, 2.0]).forecast.shape
        (2, 1)
        >>> Continuation.make("a", 0, [1.0, 2.0], [0.5, 0.7]).spread[:, 0].tolist()
        [0.5, 0.7]
        >>> Continuation.make("a", 0, [1.0, 2.0], [0.5])
        Traceback (most recent call last):
        ...
        ValueError: spread has shape (1, 1) but the forecast (2, 1)
        """
        f = np.asarray(forecast, dtype=np.float64)
        if f.ndim == 1:
            f = f[:, None]
        if f.ndim != 2 or f.shape[0] == 0:
            raise ValueError(f"forecast must be H values or H lists of C values, got {f.shape}")
        if spread is None:
            return cls(str(key), int(ts_ms), f)
        try:
            s = np.asarray(spread, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"spread is not numbers: {spread!r}") from None
        if s.ndim == 1:
            s = s[:, None]
        if s.shape != f.shape:
            raise ValueError(f"spread has shape {s.shape} but the forecast {f.shape}")
        bad = ~np.isfinite(s) | (s < 0)
        if bad.any():
            h, c = np.argwhere(bad)[0]
            raise ValueError(
                f"spread must be finite and >= 0, got {s[h, c]} at step {h + 1} channel {c}"
            )
        return cls(str(key), int(ts_ms), f, s)


@dataclass(frozen=True)
class JoinedForecasts:
    """Continuations aligned with actuals; arrays are (N, H, C), missing points are ``nan``.

    ``index[i]`` is the position of row ``i`` in the input continuations; ``anchor[i]`` the row
    of the anchor in ``actuals[keys[i]]`` (``-1``: no actual row at or before ``ts``).
    ``spread`` is aligned like ``forecast`` (``nan`` for continuations without one), or
    ``None`` when no joined continuation carries a spread, so "no spreads" stays visible.
    """

    keys: list[str]
    ts_ms: NDArray[np.int64]
    index: NDArray[np.int64]
    anchor: NDArray[np.int64]
    forecast: FloatArray
    actual: FloatArray
    naive: dict[str, FloatArray]
    periods: dict[str, int | None]
    n_unmatched: int = 0  # continuations whose key has no actual rows
    unmatched_keys: list[str] = field(default_factory=list)
    spread: FloatArray | None = None

    def common_mask(self) -> NDArray[np.bool_]:
        """Points where the actual, the model and every naive forecast are all finite."""
        mask = np.isfinite(self.actual) & np.isfinite(self.forecast)
        for pred in self.naive.values():
            mask &= np.isfinite(pred)
        return mask


def estimate_period(
    values: ArrayLike,
    max_lag: int | None = None,
    min_acf: float | None = 0.2,
    rule: str = "peak",
) -> int | None:
    """Dominant period from the autocorrelation (averaged over channels).

    Two rules pick the lag among ``2..max_lag`` (default ``n // 2``):

    * ``"peak"``: the highest local maximum of the biased ACF (divided by ``n`` at every lag,
      as TSB-AD's period for VUS windows): the fundamental period of the series;
    * ``"strongest"``: the highest ACF with each lag averaged over the pairs it has (unbiased,
      divided by ``n - lag``), searched from the first lag with a negative one (lag 2 when
      none is): the lag whose values best repeat, i.e. the strongest seasonal-naive forecast
      (for a sum of seasons with unrelated periods, a lag where they nearly realign).

    The lag is returned if its autocorrelation is at least ``min_acf`` (``None``: any);
    otherwise, or for fewer than 6 rows or a constant series, ``None``.

    Examples
    --------
    >>> t = np.arange(200)
    >>> estimate_period(np.sin(2 * np.pi * t / 12))
    12
    >>> estimate_period(np.random.default_rng(0).normal(size=200)) is None
    True
    >>> estimate_period(np.sin(2 * np.pi * t / 12), rule="strongest")
    12
    """
    if rule not in ("peak", "strongest"):
        raise ValueError(f"rule must be 'peak' or 'strongest', not {rule!r}")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    x = x[np.isfinite(x).all(axis=1)]
    n = x.shape[0]
    top = n // 2 if max_lag is None else min(int(max_lag), n - 1)
    if n < 6 or top < 3:
        return None
    x = x - x.mean(axis=0)
    var = (x * x).sum(axis=0)
    x = x[:, var > 0]
    if x.shape[1] == 0:
        return None
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(x, size, axis=0)
    acov = np.fft.irfft(spec * np.conj(spec), size, axis=0)[: top + 2]
    acf = acov / acov[0]
    if rule == "peak":
        acf = acf.mean(axis=1)
        lags = np.arange(2, top + 1)
        peak = (acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1])
        if not peak.any():
            return None
        best = int(lags[peak][np.argmax(acf[lags][peak])])
    else:
        acf = (acf[: top + 1] * (n / (n - np.arange(top + 1)))[:, None]).mean(axis=1)
        below = np.flatnonzero(acf[1:] < 0)
        first = int(below[0]) + 1 if len(below) else 2
        best = first + int(np.argmax(acf[first:]))
    return best if min_acf is None or acf[best] >= min_acf else None


def _seasonal_index(anchor: int, horizon: int, period: int) -> NDArray[np.int64]:
    """Row index repeated by seasonal naive for steps 1..H (may be negative: undefined)."""
    h = np.arange(1, horizon + 1, dtype=np.int64)
    return anchor + h - period * ((h + period - 1) // period)


def join_continuations(
    continuations: Sequence[Continuation],
    actuals: Mapping[str, ActualSeries],
    period: int | Mapping[str, int | None] | None = None,
) -> JoinedForecasts:
    """Align each continuation with the next H actual rows after its ``ts`` and build naives.

    Parameters
    ----------
    continuations : sequence of Continuation
    actuals : mapping of key to ActualSeries
    period : int or mapping or None
        Season length for seasonal naive: one for all keys, per key, or ``None`` to estimate it
        per key with :func:`estimate_period` on that key's actual values.

    Examples
    --------
    Two steps forecast after ts=2; the actual rows after it are ts=3, 4:

    >>> act = {"a": ActualSeries.from_rows([1, 2, 3, 4], [1.0, 2.0, 3.0, 5.0])}
    >>> j = join_continuations([Continuation.make("a", 2, [3.0, 4.0])], act, period=1)
    >>> j.actual[0, :, 0].tolist(), j.naive["last_value"][0, :, 0].tolist()
    ([3.0, 5.0], [2.0, 2.0])
    >>> j.spread is None
    True
    """
    matched = [(i, c) for i, c in enumerate(continuations) if c.key in actuals]
    unmatched = sorted({c.key for c in continuations if c.key not in actuals})
    horizon = max((c.forecast.shape[0] for _, c in matched), default=0)
    channels = {c.forecast.shape[1] for _, c in matched}
    if len(channels) > 1:
        raise ValueError(f"continuations disagree on the number of channels: {sorted(channels)}")
    n_ch = channels.pop() if channels else 0
    periods: dict[str, int | None] = {}
    for key in sorted({c.key for _, c in matched}):
        series = actuals[key]
        if series.values.shape[1] != n_ch:
            raise ValueError(
                f"key {key!r}: forecasts have {n_ch} channels, actual rows have "
                f"{series.values.shape[1]}"
            )
        if isinstance(period, Mapping):
            periods[key] = period.get(key)
        elif period is not None:
            periods[key] = int(period)
        else:
            periods[key] = estimate_period(series.values)
    shape = (len(matched), horizon, n_ch)
    forecast = np.full(shape, np.nan)
    actual = np.full(shape, np.nan)
    last = np.full(shape, np.nan)
    seasonal = np.full(shape, np.nan)
    spread = np.full(shape, np.nan) if any(c.spread is not None for _, c in matched) else None
    anchors = np.full(len(matched), -1, dtype=np.int64)
    for row, (_, c) in enumerate(matched):
        series = actuals[c.key]
        h = c.forecast.shape[0]
        forecast[row, :h] = c.forecast
        if spread is not None and c.spread is not None:
            spread[row, :h] = c.spread
        a = int(np.searchsorted(series.ts_ms, c.ts_ms, side="right")) - 1
        anchors[row] = a
        future = series.values[a + 1 : a + 1 + h]
        actual[row, : future.shape[0]] = future
        if a < 0:
            continue
        last[row, :h] = series.values[a]
        m = periods[c.key] or 1
        src = _seasonal_index(a, h, max(m, 1))
        ok = src >= 0
        seasonal[row, :h][ok] = series.values[src[ok]]
    return JoinedForecasts(
        keys=[c.key for _, c in matched],
        ts_ms=np.array([c.ts_ms for _, c in matched], dtype=np.int64),
        index=np.array([i for i, _ in matched], dtype=np.int64),
        anchor=anchors,
        forecast=forecast,
        actual=actual,
        naive={"last_value": last, "seasonal_naive": seasonal},
        periods=periods,
        n_unmatched=len(continuations) - len(matched),
        unmatched_keys=unmatched,
        spread=spread,
    )


def _errors(pred: FloatArray, actual: FloatArray, mask: NDArray[np.bool_]) -> dict[str, Any]:
    err = np.where(mask, pred - actual, 0.0)
    count_step = mask.sum(axis=(0, 2)).astype(np.float64)
    count = float(count_step.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mae_step = np.abs(err).sum(axis=(0, 2)) / count_step
        mse_step = (err * err).sum(axis=(0, 2)) / count_step
    nan = float("nan")
    return {
        "mae": float(np.abs(err).sum() / count) if count else nan,
        "rmse": float(math.sqrt((err * err).sum() / count)) if count else nan,
        "mae_by_step": [float(v) for v in mae_step],
        "rmse_by_step": [float(v) for v in np.sqrt(mse_step)],
    }


def _ratio(model: float, naive: list[float]) -> tuple[float, int]:
    finite = [(v, i) for i, v in enumerate(naive) if math.isfinite(v)]
    if not finite or not math.isfinite(model):
        return float("nan"), -1
    best, i = min(finite)
    if best == 0.0:
        return (float("inf") if model > 0 else float("nan")), i
    return model / best, i


def spread_metrics(
    forecast: FloatArray, actual: FloatArray, spread: FloatArray, mask: NDArray[np.bool_]
) -> dict[str, Any]:
    """How well a spread (one std of the error) describes the errors, on ``mask`` points.

    Arrays are (N, H, C); points count where ``mask`` holds and the spread is finite.

    * ``coverage_1sd``, ``coverage_2sd``: share of points with ``|error| <= k * spread``.  For
      Gaussian errors whose std the spread is, these are 0.683 and 0.954
      (:data:`NOMINAL_COVERAGE`, copied into ``nominal``); below them the spread is too
      narrow (overconfident), above too wide.  ``*_by_step``: the same per horizon step.
    * ``rmse_over_rms_spread``: model RMSE / RMS spread on the same points, 1 when the spread
      has the right size on average whatever the error's distribution (heavy tails shift the
      coverages but not this); per step too.  ``inf`` when every spread is 0 but not every
      error.
    * ``mean_spread``, ``rms_spread``, ``rmse``: the parts of that ratio.

    Examples
    --------
    Errors 0.5, 1.5, 3 against spread 1: one within 1 spread, two within 2.

    >>> f = np.array([0.5, 1.5, 3.0]).reshape(1, 3, 1)
    >>> m = spread_metrics(f, np.zeros_like(f), np.ones_like(f), np.ones(f.shape, bool))
    >>> m["coverage_1sd"], m["coverage_2sd"], m["coverage_2sd_by_step"]
    (0.3333333333333333, 0.6666666666666666, [1.0, 1.0, 0.0])
    >>> round(m["rmse_over_rms_spread"], 4), round(m["nominal"]["coverage_2sd"], 3)
    (1.9579, 0.954)
    """
    use = mask & np.isfinite(spread)
    err = np.abs(np.where(use, forecast - actual, 0.0))
    sd = np.where(use, spread, 0.0)
    n_step = use.sum(axis=(0, 2)).astype(np.float64)
    n = float(n_step.sum())
    within = {k: use & (err <= k * sd) for k in (1, 2)}
    nan = float("nan")

    def share(hit: NDArray[np.bool_]) -> tuple[float, list[float]]:
        with np.errstate(invalid="ignore", divide="ignore"):
            by_step = hit.sum(axis=(0, 2)) / n_step
        return (float(hit.sum() / n) if n else nan), [float(v) for v in by_step]

    def ratio(sq_err: float, sq_sd: float, count: float) -> float:
        if not count:
            return nan
        if sq_sd == 0.0:
            return float("inf") if sq_err > 0 else nan
        return math.sqrt(sq_err / sq_sd)

    sq_err_step, sq_sd_step = (err * err).sum(axis=(0, 2)), (sd * sd).sum(axis=(0, 2))
    cov1, cov1_step = share(within[1])
    cov2, cov2_step = share(within[2])
    return {
        "n_points": int(n),
        "mean_spread": float(sd.sum() / n) if n else nan,
        "rms_spread": float(math.sqrt(sq_sd_step.sum() / n)) if n else nan,
        "rmse": float(math.sqrt(sq_err_step.sum() / n)) if n else nan,
        "rmse_over_rms_spread": ratio(float(sq_err_step.sum()), float(sq_sd_step.sum()), n),
        "rmse_over_rms_spread_by_step": [
            ratio(float(e), float(v), float(c))
            for e, v, c in zip(sq_err_step, sq_sd_step, n_step, strict=True)
        ],
        "coverage_1sd": cov1,
        "coverage_2sd": cov2,
        "coverage_1sd_by_step": cov1_step,
        "coverage_2sd_by_step": cov2_step,
        "nominal": dict(NOMINAL_COVERAGE),
    }


def forecast_metrics(joined: JoinedForecasts) -> dict[str, Any]:
    """MAE/RMSE per horizon step and overall for the model and each naive, plus ratios.

    ``ratio_mae = model MAE / min(naive MAEs)`` (same for RMSE, and per step); below 1 the model
    beats the best naive forecast.  All on :meth:`JoinedForecasts.common_mask`.

    ``spread`` is :func:`spread_metrics` on the same points (those with a spread), checking the
    continuations' spread against the Gaussian coverage 0.683 within one spread and 0.954
    within two.  The key is always there: ``None`` when no joined continuation has a spread.

    Examples
    --------
    >>> act = {"a": ActualSeries.from_rows([1, 2, 3, 4], [1.0, 2.0, 3.0, 5.0])}
    >>> j = join_continuations([Continuation.make("a", 2, [3.0, 4.0])], act, period=1)
    >>> m = forecast_metrics(j)
    >>> m["model"]["mae"], m["last_value"]["mae"], m["ratio_mae"], m["spread"]
    (0.5, 2.0, 0.25, None)
    """
    mask = joined.common_mask()
    out: dict[str, Any] = {
        "n_continuations": int(joined.forecast.shape[0] + joined.n_unmatched),
        "n_joined": int(joined.forecast.shape[0]),
        "n_unmatched_key": joined.n_unmatched,
        "unmatched_keys": joined.unmatched_keys,
        "horizon": int(joined.forecast.shape[1]),
        "channels": int(joined.forecast.shape[2]),
        "n_points": int(mask.sum()),
        "n_points_dropped": int(np.isfinite(joined.forecast).sum() - mask.sum()),
        "periods": dict(joined.periods),
        "model": _errors(joined.forecast, joined.actual, mask),
    }
    for name in NAIVE_METHODS:
        out[name] = _errors(joined.naive[name], joined.actual, mask)
    for metric in ("mae", "rmse"):
        ratio, i = _ratio(out["model"][metric], [out[n][metric] for n in NAIVE_METHODS])
        out[f"ratio_{metric}"] = ratio
        out[f"best_naive_{metric}"] = NAIVE_METHODS[i] if i >= 0 else None
        out[f"ratio_{metric}_by_step"] = [
            _ratio(
                out["model"][f"{metric}_by_step"][s],
                [out[n][f"{metric}_by_step"][s] for n in NAIVE_METHODS],
            )[0]
            for s in range(out["horizon"])
        ]
    out["spread"] = (
        None
        if joined.spread is None
        else spread_metrics(joined.forecast, joined.actual, joined.spread, mask)
    )
    return out


def evaluate_forecasts(
    continuations: Sequence[Continuation],
    actuals: Mapping[str, ActualSeries],
    period: int | Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """:func:`join_continuations` then :func:`forecast_metrics`.

    Examples
    --------
    >>> act = {"a": ActualSeries.from_rows(range(6), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])}
    >>> m = evaluate_forecasts([Continuation.make("a", 3, [0.0, 1.0])], act, period=2)
    >>> m["seasonal_naive"]["mae"], m["last_value"]["mae"]
    (0.0, 0.5)
    """
    return forecast_metrics(join_continuations(continuations, actuals, period))
