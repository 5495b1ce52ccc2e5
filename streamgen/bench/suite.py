"""Detection and forecasting benchmark: streamgen models against simple online baselines.

A varied suite of labelled synthetic streams (:func:`make_suite`) is run through

* ``sota`` and ``rvae`` on the real :class:`~streamgen.core.engine.Engine` (the path of
  ``streamgen score``: JSON → decode → windows → normalize → score → calibrate → learn);
* River ``HalfSpaceTrees`` per key on min-max scaled values (River's recommendation: HST
  assumes features in [0, 1]);
* a rolling z-score per key (window 64) and ``|x_t - x_{t-1}|`` per key, scaled by its running
  mean, as cheap baselines.

Reported per stream and overall: ROC-AUC and PR-AUC (average precision) of the per-row score
against the point labels, points/s of score+learn (and, for streamgen, of scoring alone: the
engine's batch time less its learning time), and the MAE of streamgen's 1..H-step
continuations against last-value and seasonal-naive forecasts. The first ``warmup`` points of
every key (which hold no anomaly by construction) are a probation period left out of every
metric, for every detector alike. It must outlast the engine's own warm-up (the model's
``warmup_steps``, then ``calibrate.warmup_windows``), else the calibrated score is judged on
points it scored cold, as 0: each run records the fraction of evaluated rows scored so
(:attr:`RunResult.cold_fraction`), and the tables flag any above zero.

Seeds: seed ``s`` draws the streams, seeds the models (``model.seed``: weight init, replay
sampling) and seeds HalfSpaceTrees; the rolling z-score and ``|Δx|`` have no randomness of
their own. A run is reproducible from its seeds: the same seeds on the same machine give the
same scores bit for bit. :func:`format_markdown` reports every figure as mean ± sample standard
deviation over seeds, led by one PR-AUC table (streamgen by raw and by calibrated score,
every baseline, wins/losses against the best baseline, and the mean over streams).

Examples
--------
>>> s = make_suite(quick=True, seed=0)[0]
>>> s.name, s.values.shape[0] == s.labels.shape[0]
('spikes', True)
>>> r = run_baseline("diff", s)
>>> 0.5 < r.roc_auc <= 1.0
True
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamgen.bench.synthetic import KINDS, make_stream
from streamgen.config import PipelineConfig
from streamgen.evaluation.detection import average_precision, roc_auc
from streamgen.evaluation.forecast import estimate_period
from streamgen.models.registry import MODEL_NAMES

DETECTORS = (*MODEL_NAMES, "hst", "rolling_z", "diff")
BASELINES = ("hst", "rolling_z", "diff")
STREAMS = (
    "spikes",
    "level_shift",
    "freq_shape",
    "noise_burst",
    "drift",
    "flatline",
    "multichannel",
    "seasonal",
    "many_keys",
)
_START_S = 1_700_000_000


# -- streams ---------------------------------------------------------------------------------
@dataclass
class Stream:
    """A labelled multi-key stream: rows in event-time order and per-key arrays."""

    name: str
    rows: list[dict[str, Any]]
    values: np.ndarray  # (K, N, C)
    labels: np.ndarray  # (K, N)
    warmup: int
    domain: str = "synthetic"
    source: str = ""


def _from_rows(name: str, rows: list[dict[str, Any]], n_keys: int, warmup: int) -> Stream:
    chans = [c for c in rows[0] if c.startswith("x")]
    n = len(rows) // n_keys
    vals = np.array([[r[c] for c in chans] for r in rows], dtype=np.float64)
    vals = vals.reshape(n, n_keys, len(chans)).transpose(1, 0, 2)
    labels = np.array([r["is_anomaly"] for r in rows], np.int8).reshape(n, n_keys).T
    return Stream(name, rows, vals, labels, warmup)


def _add_seasons(stream: Stream, rng: np.random.Generator) -> Stream:
    """Add a long (80-200 points) and a short (5-9 points) season to every key; labels stay."""
    K, N, C = stream.values.shape
    t = np.arange(N)
    for k in range(K):
        sd = stream.values[k].std(0)
        for lo, hi, amp in ((80, 200, 1.5), (5, 9, 0.4)):
            p, ph = rng.uniform(lo, hi), rng.uniform(0, 2 * np.pi)
            stream.values[k] += (amp * sd)[None, :] * np.sin(2 * np.pi * t / p + ph)[:, None]
    chans = [c for c in stream.rows[0] if c.startswith("x")]
    for i, row in enumerate(stream.rows):
        for c, name in enumerate(chans):
            row[name] = round(float(stream.values[i % K, i // K, c]), 6)
    return stream


def make_suite(quick: bool = False, seed: int = 0) -> list[Stream]:
    """The benchmark streams for one seed (smaller and fewer keys with ``quick``)."""
    # Probation: with default batching the engine is warm after ~540 points of each of 4 keys
    # (1024-record batches hold 256 points per key) and after ~290 points of each of 8.
    keys, n, warm = (4, 1500, 600) if quick else (8, 2500, 300)
    many_keys, many_n = (24, 700) if quick else (64, 800)
    base = dict(n_keys=keys, n_points=n, warmup_points=warm, anomalies_per_key=5)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("spikes", dict(kinds=("spike",))),
        ("level_shift", dict(kinds=("level_shift",))),
        ("freq_shape", dict(kinds=("frequency", "shape"))),
        ("noise_burst", dict(kinds=("noise_burst",))),
        ("drift", dict(kinds=("drift",))),
        ("flatline", dict(kinds=("flatline",))),
        ("multichannel", dict(kinds=KINDS, n_channels=3)),
        ("seasonal", dict(kinds=KINDS)),
        ("many_keys", dict(kinds=KINDS, n_keys=many_keys, n_points=many_n, anomalies_per_key=2)),
    ]
    assert tuple(n for n, _ in cases) == STREAMS
    out = []
    for i, (name, kw) in enumerate(cases):
        spec = {**base, **kw, "seed": 1000 * seed + i, "start_s": _START_S}
        s = _from_rows(name, make_stream(**spec), int(spec["n_keys"]), warm)
        if name == "seasonal":
            s = _add_seasons(s, np.random.default_rng(1000 * seed + i))
        out.append(s)
    return out


# -- results ---------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One detector on one stream and seed."""

    detector: str
    stream: str
    seed: int
    roc_auc: float
    pr_auc: float
    points_per_s: float
    score_points_per_s: float = float("nan")
    pr_auc_calibrated: float = float("nan")  # streamgen: PR-AUC of the per-key calibrated score
    cold_fraction: float = float("nan")  # streamgen: evaluated rows scored before warm (0 best)
    forecast: dict[str, float] = field(default_factory=dict)  # mae model/last/snaive (scaled)
    timings: dict[str, float] = field(default_factory=dict)


def _evaluate(det: str, s: Stream, score_kn: np.ndarray, secs: float, seed: int) -> RunResult:
    m = np.zeros_like(s.labels, bool)
    m[:, s.warmup :] = True
    sc, lab = np.nan_to_num(score_kn[m], nan=0.0, posinf=1e12), s.labels[m]
    n = s.labels.size
    return RunResult(det, s.name, seed, roc_auc(sc, lab), average_precision(sc, lab), n / secs)


# -- baselines -------------------------------------------------------------------------------
def _run_hst(s: Stream, seed: int) -> np.ndarray:
    from river import anomaly, compose, preprocessing

    K, N, C = s.values.shape
    models = [
        compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=seed))
        for _ in range(K)
    ]
    out = np.zeros((K, N))
    names = [f"x{c}" for c in range(C)]
    for i in range(N):
        for k in range(K):
            x = dict(zip(names, s.values[k, i].tolist(), strict=True))
            out[k, i] = models[k].score_one(x)
            models[k].learn_one(x)
    return out


def _run_rolling_z(s: Stream, window: int = 64) -> np.ndarray:
    K, N, C = s.values.shape
    bufs: list[deque[np.ndarray]] = [deque(maxlen=window) for _ in range(K)]
    sums = np.zeros((K, C))
    sq = np.zeros((K, C))
    out = np.zeros((K, N))
    for i in range(N):
        for k in range(K):
            x = s.values[k, i]
            b = bufs[k]
            n = len(b)
            if n >= 2:
                mu = sums[k] / n
                sd = np.sqrt(np.maximum(sq[k] / n - mu * mu, 1e-12))
                out[k, i] = float(np.sqrt(np.mean(((x - mu) / sd) ** 2)))
            if n == window:
                old = b[0]
                sums[k] -= old
                sq[k] -= old * old
            b.append(x)
            sums[k] += x
            sq[k] += x * x
    return out


def _run_diff(s: Stream, half_life: float = 500.0) -> np.ndarray:
    K, N, C = s.values.shape
    a = 1.0 - 0.5 ** (1.0 / half_life)
    scale = np.zeros((K, C))
    prev = s.values[:, 0].copy()
    out = np.zeros((K, N))
    for i in range(1, N):
        for k in range(K):
            d = np.abs(s.values[k, i] - prev[k])
            prev[k] = s.values[k, i]
            if i > 1:
                out[k, i] = float(np.sqrt(np.mean((d / np.maximum(scale[k], 1e-12)) ** 2)))
            # Plain mean while young, EW after (same warm start as the normalizer).
            scale[k] += max(a, 1.0 / i) * (d - scale[k])
    return out


def run_baseline(name: str, s: Stream, seed: int = 0) -> RunResult:
    """Run one of :data:`BASELINES` over a stream and evaluate it."""
    t0 = time.perf_counter()
    if name == "hst":
        sc = _run_hst(s, seed)
    elif name == "rolling_z":
        sc = _run_rolling_z(s)
    elif name == "diff":
        sc = _run_diff(s)
    else:
        raise ValueError(f"unknown baseline {name!r}")
    return _evaluate(name, s, sc, time.perf_counter() - t0, seed)


# -- streamgen through the engine ------------------------------------------------------------
class _Collect:
    """An in-memory sink that keeps only the given fields of each row, as plain values.

    Keeping the rows themselves (a dict and nested lists per record) would leave hundreds of
    thousands of container objects alive, and Python's cyclic garbage collector, scanning
    them again and again, would be timed as engine cost. List values (forecasts) become
    float32 arrays, converted a block of rows at a time: one conversion per row cost ~5 us,
    a sixth of the MLP loop, timed as engine cost too.
    """

    BLOCK = 1024

    def __init__(self, *fields: str) -> None:
        self.fields = fields
        self._cols: dict[str, list[Any]] = {f: [] for f in fields}
        self._lists: dict[str, list[Any]] = {f: [] for f in fields}

    def add(self, row: Any) -> None:
        for f in self.fields:
            v = row[f]
            if isinstance(v, list):
                block = self._lists[f]
                block.append(v)
                if len(block) >= self.BLOCK:
                    self._convert(f)
            else:
                self._cols[f].append(v)

    def _convert(self, f: str) -> None:
        self._cols[f].extend(np.asarray(self._lists[f], np.float32))
        self._lists[f] = []

    @property
    def cols(self) -> dict[str, list[Any]]:
        for f in self.fields:
            if self._lists[f]:
                self._convert(f)
        return self._cols

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def forecast_errors(s: Stream, conts: dict[str, list[Any]], horizon: int) -> dict[str, float]:
    """Scaled MAE of continuations vs last-value and seasonal-naive, over normal futures.

    Each key's errors are divided by the standard deviation of its probation period, so keys
    of different scales weigh alike; only continuations made after probation whose whole
    future is normal and observed count.
    """
    K, N, C = s.values.shape
    errs: dict[str, list[float]] = {"model": [], "last": [], "snaive": []}
    periods = [
        estimate_period(s.values[k, : s.warmup], min(200, s.warmup // 2), None, "strongest") or 1
        for k in range(K)
    ]
    scale = s.values[:, : s.warmup].std(1) + 1e-12  # (K, C)
    h = np.arange(1, horizon + 1)
    for key, ts_ms, fc in zip(conts["key"], conts["ts_ms"], conts["forecast"], strict=True):
        k = int(str(key).rsplit("-", 1)[1])
        i = int(ts_ms // 1000 - _START_S)
        if i < s.warmup or i + horizon >= N or s.labels[k, i + 1 : i + 1 + horizon].any():
            continue
        actual = s.values[k, i + h]  # (H, C)
        p = periods[k]
        snaive = s.values[k, i + h - p * np.ceil(h / p).astype(int)]
        fc = fc.astype(np.float64)
        errs["model"].append(np.abs(fc - actual).mean() / scale[k].mean())
        errs["last"].append(np.abs(s.values[k, i] - actual).mean() / scale[k].mean())
        errs["snaive"].append(np.abs(snaive - actual).mean() / scale[k].mean())
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in errs.items()}
    out["ratio"] = out["model"] / min(out["last"], out["snaive"])
    return out


def engine_run(
    model: str,
    s: Stream,
    seed: int = 0,
    overrides: list[str] | None = None,
    base: PipelineConfig | None = None,
    fields: tuple[str, ...] = ("score", "calibrated", "warm"),
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], float, dict[str, float], PipelineConfig]:
    """Run ``model`` over a stream's rows through the engine (pipeline ``base``, default
    settings when None, then ``overrides``), as ``streamgen score`` does.

    Returns the score rows' ``fields`` and the continuations (key, ts_ms, forecast) as
    columns, the seconds spent in the engine, its per-stage timings and the configuration.
    """
    from streamgen.config import apply_overrides
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.core.runtime import freeze_heap
    from streamgen.records import Position

    cfg = apply_overrides(
        base or PipelineConfig(), [f"model.name={model}", f"model.seed={seed}", *(overrides or [])]
    )
    msgs = [
        RawMessage(json.dumps(r).encode(), Position("bench", 0, i)) for i, r in enumerate(s.rows)
    ]
    scores = _Collect(*fields)
    conts = _Collect("key", "ts_ms", "forecast")
    eng = Engine(cfg, Sinks(scores=scores, continuations=conts))
    freeze_heap()  # as the service and `streamgen score` do before their loops
    B = cfg.batch.max_records
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(0, len(msgs), B):
        st = eng.process(msgs[i : i + B])
        for k, v in st.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    secs = time.perf_counter() - t0
    return scores.cols, conts.cols, secs, timings, cfg


def run_streamgen(
    model: str,
    s: Stream,
    seed: int = 0,
    overrides: list[str] | None = None,
    base: PipelineConfig | None = None,
) -> RunResult:
    """Run ``model`` over a stream through the engine (:func:`engine_run`); evaluate its
    scores and continuations."""
    fields = ("raw_score", "calibrated", "warm")
    cols, conts, secs, timings, cfg = engine_run(model, s, seed, overrides, base, fields)
    K, N, _ = s.values.shape
    # Rows are interleaved key by key at each time step: row i*K + k is key k at time i.
    # The model's raw error (None before the model is trained: NaN, ranked as 0).
    sc = np.array(cols["raw_score"], np.float64).reshape(N, K).T
    res = _evaluate(model, s, sc, secs, seed)
    cal = np.array(cols["calibrated"], np.float64).reshape(N, K).T
    res.pr_auc_calibrated = _evaluate(model, s, cal, secs, seed).pr_auc
    warm = np.array(cols["warm"], bool).reshape(N, K).T
    res.cold_fraction = float(1.0 - warm[:, s.warmup :].mean())
    res.score_points_per_s = len(s.rows) / max(secs - timings.get("learn", 0.0), 1e-9)
    res.forecast = forecast_errors(s, conts, cfg.model.horizon)
    res.timings = timings
    return res


# -- the suite -------------------------------------------------------------------------------
def run_suite(
    quick: bool = False,
    seeds: int = 3,
    detectors: tuple[str, ...] = DETECTORS,
    overrides: list[str] | None = None,
    streams: tuple[str, ...] | None = None,
    log: Any = None,
    base: PipelineConfig | None = None,
    first_seed: int = 0,
) -> list[RunResult]:
    """Every detector on every stream for seeds ``first_seed .. first_seed+seeds-1``
    (streamgen models run with pipeline ``base`` and ``overrides``; model name and
    ``model.seed`` are set per run, so a ``model.seed`` in ``base`` is ignored)."""
    results = []
    for seed in range(first_seed, first_seed + seeds):
        for s in make_suite(quick, seed):
            if streams and s.name not in streams:
                continue
            for det in detectors:
                if det in BASELINES:
                    r = run_baseline(det, s, seed)
                else:
                    r = run_streamgen(det, s, seed, overrides, base)
                results.append(r)
                if log is not None:
                    cal = (
                        ""
                        if math.isnan(r.pr_auc_calibrated)
                        else (f" (calibrated {r.pr_auc_calibrated:.3f})")
                    )
                    log(
                        f"seed {seed} {s.name:>12} {det:>9}: pr {r.pr_auc:.3f}{cal} "
                        f"roc {r.roc_auc:.3f} {r.points_per_s:,.0f} pts/s"
                    )
    return results


def _ms(vals: list[float], fmt: str = "{:.3f}") -> str:
    """``mean ± std`` over seeds (sample standard deviation; the mean alone for one seed)."""
    v = np.array([x for x in vals if not math.isnan(x)])
    if not len(v):
        return "–"
    if len(v) == 1:
        return fmt.format(v[0])
    return (fmt + " ± " + fmt).format(v.mean(), v.std(ddof=1))


def summarize(results: list[RunResult]) -> dict[str, Any]:
    """Aggregate per (stream, detector) and overall: a value per seed (for "overall", the mean
    over streams within that seed), reported as mean ± std over seeds."""
    dets = sorted({r.detector for r in results}, key=lambda d: (DETECTORS + (d,)).index(d))
    streams = list(dict.fromkeys(r.stream for r in results))
    seeds = sorted({r.seed for r in results})
    table: dict[str, Any] = {"streams": streams, "detectors": dets, "seeds": seeds, "cells": {}}
    keys = (
        "roc_auc",
        "pr_auc",
        "pr_auc_calibrated",
        "points_per_s",
        "score_points_per_s",
        "cold_fraction",
    )
    for st in [*streams, "overall"]:
        for d in dets:
            rs = [r for r in results if r.detector == d and (st == "overall" or r.stream == st)]
            if not rs:
                continue
            by_seed = [v for v in ([r for r in rs if r.seed == sd] for sd in seeds) if v]
            agg = {k: [float(np.mean([getattr(r, k) for r in v])) for v in by_seed] for k in keys}
            if rs[0].forecast:
                for fk in ("model", "last", "snaive", "ratio"):
                    agg["mae_" + fk] = [
                        float(np.nanmean([r.forecast[fk] for r in v])) for v in by_seed
                    ]
            table["cells"][f"{st}/{d}"] = agg
    return table


def _mean(cell: dict[str, Any], key: str) -> float:
    v = [x for x in cell.get(key, []) if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


_LABELS = {"hst": "HST", "rolling_z": "rolling z", "diff": "\\|Δx\\|"}


def _columns(dets: list[str]) -> list[tuple[str, str]]:
    """PR-AUC columns of the main table: each model by raw then calibrated score, then the
    baselines."""
    cols = []
    for d in dets:
        if d in BASELINES:
            continue
        cols += [(d, "pr_auc"), (d, "pr_auc_calibrated")]
    return cols + [(d, "pr_auc") for d in dets if d in BASELINES]


def wins_losses(summary: dict[str, Any], det: str, key: str = "pr_auc") -> dict[str, int]:
    """How often ``det`` (by ``key``) beats the best baseline: per stream on the means over
    seeds (``win``/``tie``/``loss``), and per stream and seed (``win_runs``/...)."""
    cells = summary["cells"]
    bases = [b for b in summary["detectors"] if b in BASELINES]
    out = dict.fromkeys(("win", "tie", "loss", "win_runs", "tie_runs", "loss_runs"), 0)
    if not bases:
        return out

    def tally(mine: float, best: float, suffix: str) -> None:
        # Compared at the printed precision: 1.000 against 1.000 is a tie, not a win.
        m, b = round(mine, 3), round(best, 3)
        out[("win" if m > b else "tie" if m == b else "loss") + suffix] += 1

    for st in summary["streams"]:
        c = cells[f"{st}/{det}"][key]
        per_base = [cells[f"{st}/{b}"]["pr_auc"] for b in bases]
        tally(
            _mean(cells[f"{st}/{det}"], key),
            max(_mean(cells[f"{st}/{b}"], "pr_auc") for b in bases),
            "",
        )
        for i, v in enumerate(c):
            tally(v, max(pb[i] for pb in per_base), "_runs")
    return out


def _wl(t: dict[str, int], suffix: str = "") -> str:
    w, ti, lo = t["win" + suffix], t["tie" + suffix], t["loss" + suffix]
    return f"{w}–{lo}" + (f" ({ti} tied)" if ti else "")


def format_pr_table(summary: dict[str, Any]) -> str:
    """The one table to quote: PR-AUC per stream (mean ± std over seeds) of every model by
    raw and by per-key calibrated score and of every baseline; then wins–losses of each model
    column against the best baseline (per stream, and per stream and seed) and, last, the
    mean over streams. The best mean of each row is in bold."""
    cells = summary["cells"]
    cols = _columns(summary["detectors"])
    names = [
        _LABELS.get(d, d + (" (cal)" if k == "pr_auc_calibrated" else " (raw)")) for d, k in cols
    ]
    out = ["| stream | " + " | ".join(names) + " |", "|---" + "|---:" * len(cols) + "|"]
    for st in [*summary["streams"], "overall"]:
        means = [_mean(cells[f"{st}/{d}"], k) for d, k in cols]
        best = max((round(m, 3) for m in means if not math.isnan(m)), default=None)
        txt = []
        for (d, k), m in zip(cols, means, strict=True):
            t = _ms(cells[f"{st}/{d}"][k])
            txt.append(f"**{t}**" if best is not None and round(m, 3) == best else t)
        if st == "overall" and any(d in BASELINES for d, _ in cols):
            wl = [
                _wl(wins_losses(summary, d, k)) + " · " + _wl(wins_losses(summary, d, k), "_runs")
                if d not in BASELINES
                else ""
                for d, k in cols
            ]
            out.append(
                "| wins–losses vs best baseline (streams · stream×seed runs) | "
                + " | ".join(wl)
                + " |"
            )
        if st == "overall":
            st = f"mean of {len(summary['streams'])} streams"
        out.append(f"| {st} | " + " | ".join(txt) + " |")
    return "\n".join(out)


def format_markdown(summary: dict[str, Any]) -> str:
    """Markdown: the PR-AUC table (:func:`format_pr_table`), then ROC-AUC, throughput and
    forecast error."""
    dets, cells = summary["detectors"], summary["cells"]
    rows = [*summary["streams"], "overall"]
    models = [d for d in dets if d not in BASELINES]
    seeds = summary["seeds"]
    seed_txt = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    out = [
        f"### PR-AUC (average precision), seeds {seed_txt}: mean ± std over seeds",
        "",
        format_pr_table(summary),
        "",
        "raw = ranked by the model's raw score; cal = by the per-key calibrated score. "
        "A model column wins a stream when its mean, at three decimals, is above the "
        "best baseline's.",
        "",
    ]
    cold = [
        f"{d} {_mean(cells[f'overall/{d}'], 'cold_fraction'):.1%}"
        for d in models
        if _mean(cells[f"overall/{d}"], "cold_fraction") > 0
    ]
    if cold:
        out += [
            "⚠ share of evaluated rows scored before the engine was warm: "
            + ", ".join(cold)
            + ". The probation period is too short for this setup.",
            "",
        ]
    out += [
        "### ROC-AUC",
        "",
        "| stream | " + " | ".join(dets) + " |",
        "|---" * (len(dets) + 1) + "|",
    ]
    for st in rows:
        out.append(
            f"| {st} | " + " | ".join(_ms(cells[f"{st}/{d}"]["roc_auc"]) for d in dets) + " |"
        )
    out.append("")
    out += [
        "### Throughput (points/s over all streams; streamgen through the engine, decode included)",
        "",
        "| detector | score+learn | score only |",
        "|---|---|---|",
    ]
    for d in dets:
        c = cells[f"overall/{d}"]
        out.append(
            f"| {d} | {_ms(c['points_per_s'], '{:,.0f}')} | "
            f"{_ms(c['score_points_per_s'], '{:,.0f}')} |"
        )
    if models:
        out += [
            "",
            "### Forecast MAE of the 1..H-step continuations (per-key scaled)",
            "",
            "| stream | "
            + " | ".join(models)
            + " | last value | seasonal naive | "
            + " | ".join(f"{m} / best naive" for m in models)
            + " |",
            "|---" * (2 * len(models) + 3) + "|",
        ]
        for st in rows:
            c0 = cells[f"{st}/{models[0]}"]
            out.append(
                f"| {st} | "
                + " | ".join(_ms(cells[f"{st}/{m}"]["mae_model"]) for m in models)
                + f" | {_ms(c0['mae_last'])} | {_ms(c0['mae_snaive'])} | "
                + " | ".join(_ms(cells[f"{st}/{m}"]["mae_ratio"], "{:.2f}") for m in models)
                + " |"
            )
    return "\n".join(out)


def to_json(results: list[RunResult], summary: dict[str, Any]) -> dict[str, Any]:
    return {"runs": [asdict(r) for r in results], "summary": summary}


__all__ = [
    "BASELINES",
    "DETECTORS",
    "RunResult",
    "Stream",
    "engine_run",
    "forecast_errors",
    "format_markdown",
    "format_pr_table",
    "make_suite",
    "run_baseline",
    "run_streamgen",
    "run_suite",
    "summarize",
    "to_json",
    "wins_losses",
]
