"""Detection benchmark on real labelled series (``streamgen bench --suite real``).

Every series of :mod:`streamgen.bench.realdata` is one key, judged on **every row from its first
point on**: a detector's per-row score is ranked over the whole series, cold start included,
exactly as a user ranks the ``score`` column of ``streamgen score``. Reported per series, per
domain and overall, mean ± std over seeds:

* **VUS-PR** (headline, as TSB-AD ranks methods: Paparrizos et al., PVLDB 2022; buffer up to
  the series' period, as the TSB-AD code estimates it from the autocorrelation), PR-AUC
  (average precision) and ROC-AUC of each detector;
* for streamgen models also the same metrics of the ``calibrated`` column and of warm rows
  only (secondary views), the share of cold rows and points/s.

Baselines, run in the same process on the same series:

* ``random``: uniform scores (seeded), the floor;
* ``hst``, ``rolling_z``, ``diff``: River HalfSpaceTrees, rolling z-score and ``|x_t - x_{t-1}|``
  from :mod:`streamgen.bench.suite`, online like streamgen;
* ``subpca``: PCA on sliding windows of one period (the "Sub-PCA" detector at the top of the
  TSB-AD univariate leaderboard): each window's Mahalanobis distance under a PCA of *all*
  windows of the series, spread back to points as the mean over the windows that cover them.
  It is offline: it sees the whole series, anomalies included, before it scores any of it,
  and a point's score draws on windows that end up to a period *after* it, which no
  streaming detector can;
* ``subpca_online``: the same distance computed as a stream would: each window (of one
  period) under a PCA refitted every period on the windows that ended before it, the score
  given to the window's last point.

Examples
--------
>>> import numpy as np
>>> x = np.sin(np.arange(400) * 2 * np.pi / 25)[:, None]
>>> x[300:305] += 3.0
>>> s = subpca_scores(x, 25)
>>> int(np.argmax(s)) in range(280, 330)
True
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamgen.bench.suite import Stream, _mean, _ms, engine_run, run_baseline
from streamgen.config import PipelineConfig
from streamgen.evaluation.detection import average_precision, roc_auc, vus
from streamgen.evaluation.forecast import estimate_period
from streamgen.models.registry import MODEL_NAMES

MODELS = MODEL_NAMES
BASELINES = ("random", "hst", "rolling_z", "diff", "subpca_online", "subpca")
DETECTORS = MODELS + BASELINES
_LABELS = {
    "random": "random", "hst": "HST", "rolling_z": "rolling z", "diff": "\\|Δx\\|",
    "subpca": "Sub-PCA (offline)", "subpca_online": "Sub-PCA (online)",
}

# VUS buffer bounds (rows): TSB-AD uses the series' period; a series without a clear one gets
# the fallback, and very long periods are capped (the cost grows with the buffer).
VUS_FALLBACK = 100
VUS_MAX = 256


def series_period(values: np.ndarray) -> int | None:
    """The dominant period of a ``(N, C)`` series (autocorrelation; None if none is clear)."""
    return estimate_period(values, max_lag=min(len(values) // 3, 1000))


def vus_window(values: np.ndarray) -> int:
    p = series_period(values)
    return int(min(max(p or VUS_FALLBACK, 8), VUS_MAX))


def _windows(values: np.ndarray, window: int, standardize: bool) -> tuple[np.ndarray, int]:
    """A series (standardized as a whole if asked) → its sliding windows
    ``(n - w + 1, w * C)`` and ``w``."""
    x = np.asarray(values, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = len(x)
    w = int(max(2, min(window, n // 4)))
    if standardize:
        x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    return np.lib.stride_tricks.sliding_window_view(x, w, axis=0).reshape(n - w + 1, -1), w


def _mahalanobis(fit: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of ``win`` rows under the PCA of ``fit`` rows (each
    coordinate standardized; near-zero directions dropped: they would turn rounding noise
    into huge distances)."""
    mu = fit.mean(0)
    sd = fit.std(0) + 1e-12
    z = (fit - mu) / sd
    cov = z.T @ z / max(1, len(z) - 1)
    ev, vec = np.linalg.eigh(cov)
    keep = ev > 1e-6 * ev.max()
    proj = ((win - mu) / sd) @ vec[:, keep]
    return np.sum(proj**2 / ev[keep], axis=1)


def subpca_online_scores(values: np.ndarray, window: int) -> np.ndarray:
    """Prequential Sub-PCA: every window's distance under a PCA refitted every ``window``
    points (at least 50) on the windows that ended before it, given to its last point; 0
    until two windows' length of history."""
    # No standardization over the whole series: it would leak the future into the past.
    win, w = _windows(values, window, standardize=False)
    n = len(win) + w - 1
    out = np.zeros(n)
    refit = max(50, w)
    for e in range(2 * w, len(win), refit):
        d = _mahalanobis(win[: e - w + 1], win[e : e + refit])
        out[e + w - 1 : e + w - 1 + len(d)] = d
    return out


def subpca_scores(values: np.ndarray, window: int) -> np.ndarray:
    """Sub-PCA: Mahalanobis distance of every sliding window (length ``window``, channels
    side by side) under a PCA of all windows, each point scored by the mean over the windows
    that hold it (offline)."""
    win, w = _windows(values, window, standardize=True)
    n = len(win) + w - 1
    d = _mahalanobis(win, win)
    # Point score: mean over covering windows (cumulative sums over the window starts).
    cs = np.concatenate([[0.0], np.cumsum(d)])
    i = np.arange(n)
    lo, hi = np.maximum(0, i - w + 1), np.minimum(i, n - w) + 1
    return (cs[hi] - cs[lo]) / (hi - lo)


def detection_metrics(scores: np.ndarray, labels: np.ndarray, window: int) -> dict[str, float]:
    """VUS-PR (buffer up to ``window``), PR-AUC and ROC-AUC of per-row scores."""
    sc = np.nan_to_num(np.asarray(scores, np.float64), nan=0.0, posinf=1e12, neginf=-1e12)
    lab = np.asarray(labels).astype(bool)
    if not lab.any() or lab.all():
        nan = float("nan")
        return {"vus_pr": nan, "pr_auc": nan, "roc_auc": nan}
    return {
        "vus_pr": vus(sc, lab, max_window=window).pr,
        "pr_auc": average_precision(sc, lab),
        "roc_auc": roc_auc(sc, lab),
    }


@dataclass
class RealResult:
    """One detector on one series and seed (metrics over every row)."""

    detector: str
    series: str
    domain: str
    seed: int
    vus_pr: float
    pr_auc: float
    roc_auc: float
    points_per_s: float
    # streamgen only: the calibrated column over every row, and over warm rows only.
    calibrated: dict[str, float] = field(default_factory=dict)
    warm_only: dict[str, float] = field(default_factory=dict)
    cold_fraction: float = float("nan")


def run_detector(
    det: str,
    s: Stream,
    seed: int = 0,
    overrides: list[str] | None = None,
    base: PipelineConfig | None = None,
) -> RealResult:
    """Score one single-key series with ``det`` and evaluate every row."""
    if s.values.shape[0] != 1:
        raise ValueError("real-suite series have one key")
    lab = s.labels[0]
    win = vus_window(s.values[0])
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if det in MODELS:
        cols, _, secs, _, _ = engine_run(det, s, seed, overrides, base)
        sc = np.array(cols["score"], np.float64)
        cal = np.array(cols["calibrated"], np.float64)
        warm = np.array(cols["warm"], bool)
        extra["calibrated"] = detection_metrics(cal, lab, win)
        extra["warm_only"] = detection_metrics(cal[warm], lab[warm], win)
        extra["cold_fraction"] = float(1.0 - warm.mean())
    elif det == "random":
        sc = np.random.default_rng(seed).random(len(lab))
    elif det in ("subpca", "subpca_online"):
        p = series_period(s.values[0]) or VUS_FALLBACK
        sc = (subpca_scores if det == "subpca" else subpca_online_scores)(s.values[0], p)
    else:
        # The online baselines of the synthetic suite, read back per row.
        sc = _baseline_scores(det, s, seed)
    if det not in MODELS:
        secs = time.perf_counter() - t0
    m = detection_metrics(sc, lab, win)
    return RealResult(det, s.name, s.domain, seed, m["vus_pr"], m["pr_auc"], m["roc_auc"],
                      len(lab) / max(secs, 1e-9), **extra)


def _baseline_scores(det: str, s: Stream, seed: int) -> np.ndarray:
    from streamgen.bench import suite as benchsuite

    if det == "hst":
        return benchsuite._run_hst(s, seed)[0]
    if det == "rolling_z":
        return benchsuite._run_rolling_z(s)[0]
    if det == "diff":
        return benchsuite._run_diff(s)[0]
    run_baseline(det, s, seed)  # raises the "unknown baseline" error
    raise AssertionError


def run_real_suite(
    seeds: int = 3,
    detectors: tuple[str, ...] = DETECTORS,
    overrides: list[str] | None = None,
    names: tuple[str, ...] | None = None,
    log: Any = None,
    base: PipelineConfig | None = None,
    first_seed: int = 0,
) -> list[RealResult]:
    """Every detector on every real series for seeds ``first_seed ..`` (the series are fixed
    data; the seeds seed the models, HalfSpaceTrees and the random baseline)."""
    from streamgen.bench.realdata import make_real_suite

    suite = make_real_suite(names)
    out = []
    for seed in range(first_seed, first_seed + seeds):
        for s in suite:
            for det in detectors:
                r = run_detector(det, s, seed, overrides, base)
                out.append(r)
                if log is not None:
                    log(f"seed {seed} {s.name:>24} {det:>9}: vus-pr {r.vus_pr:.3f} "
                        f"pr {r.pr_auc:.3f} roc {r.roc_auc:.3f} {r.points_per_s:,.0f} pts/s")
    return out


# -- summary ---------------------------------------------------------------------------------
_METRICS = ("vus_pr", "pr_auc", "roc_auc", "points_per_s", "cold_fraction")


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN (and no warning) when there are none."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def summarize(results: list[RealResult]) -> dict[str, Any]:
    """Per (series, detector), per (domain, detector) and overall: one value per seed (for a
    domain or overall, the mean over its series within that seed)."""
    dets = sorted({r.detector for r in results}, key=lambda d: (DETECTORS + (d,)).index(d))
    series = list(dict.fromkeys(r.series for r in results))
    domain_of = {r.series: r.domain for r in results}
    domains = list(dict.fromkeys(domain_of[s] for s in series))
    seeds = sorted({r.seed for r in results})
    cells: dict[str, Any] = {}

    def agg(rs: list[RealResult]) -> dict[str, list[float]]:
        by_seed = [v for v in ([r for r in rs if r.seed == sd] for sd in seeds) if v]
        out = {k: [_nanmean([getattr(r, k) for r in v]) for v in by_seed] for k in _METRICS}
        for view in ("calibrated", "warm_only"):
            if rs[0].__dict__[view]:
                for k in ("vus_pr", "pr_auc", "roc_auc"):
                    out[f"{view}_{k}"] = [
                        _nanmean([r.__dict__[view][k] for r in v]) for v in by_seed
                    ]
        return out

    for d in dets:
        for s in series:
            rs = [r for r in results if r.detector == d and r.series == s]
            if rs:
                cells[f"{s}/{d}"] = agg(rs)
        for dom in domains:
            rs = [r for r in results if r.detector == d and r.domain == dom]
            if rs:
                cells[f"domain:{dom}/{d}"] = agg(rs)
        rs = [r for r in results if r.detector == d]
        if rs:
            cells[f"overall/{d}"] = agg(rs)
    return {"series": series, "domains": domains, "domain_of": domain_of, "detectors": dets,
            "seeds": seeds, "cells": cells}


def wins(summary: dict[str, Any], det: str, key: str = "vus_pr") -> dict[str, Any]:
    """Series where ``det`` is above the best baseline (means over seeds, 3 decimals), and the
    largest PR-AUC margin by which ``|Δx|`` beats it."""
    cells, bases = summary["cells"], [b for b in summary["detectors"] if b in BASELINES]
    win = tie = loss = 0
    diff_margin, worst = -math.inf, ""
    for s in summary["series"]:
        mine = round(_mean(cells[f"{s}/{det}"], key), 3)
        best = max(
            round(_mean(cells[f"{s}/{b}"], key), 3)
            for b in bases
            if b != "random" and f"{s}/{b}" in cells
        )
        win, tie, loss = win + (mine > best), tie + (mine == best), loss + (mine < best)
        if "diff" in bases:
            m = _mean(cells[f"{s}/diff"], "pr_auc") - _mean(cells[f"{s}/{det}"], "pr_auc")
            if m > diff_margin:
                diff_margin, worst = m, s
    return {"win": win, "tie": tie, "loss": loss, "n": len(summary["series"]),
            "diff_margin_pr_auc": diff_margin, "diff_worst_series": worst}


def _table(summary: dict[str, Any], rows: list[str], key: str, label: str) -> list[str]:
    cells, dets = summary["cells"], summary["detectors"]
    names = [_LABELS.get(d, d) for d in dets]
    out = [f"| {label} | " + " | ".join(names) + " |", "|---" + "|---:" * len(dets) + "|"]
    for r in rows:
        cs = [cells.get(f"{r}/{d}", {}) for d in dets]
        means = [_mean(c, key) for c in cs]
        best = max((round(m, 3) for m in means if not math.isnan(m)), default=None)
        txt = [
            f"**{_ms(c.get(key, []))}**" if best is not None and round(m, 3) == best
            else _ms(c.get(key, []))
            for c, m in zip(cs, means, strict=True)
        ]
        name = r.split(":", 1)[-1] if r != "overall" else f"**mean of {len(summary['series'])}**"
        out.append(f"| {name} | " + " | ".join(txt) + " |")
    return out


def format_markdown(summary: dict[str, Any]) -> str:
    """Markdown: VUS-PR per domain and overall, wins against the best baseline, then VUS-PR,
    PR-AUC and ROC-AUC per series, and the streamgen-only secondary views."""
    seeds = summary["seeds"]
    seed_txt = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    doms = [f"domain:{d}" for d in summary["domains"]]
    out = [f"### Real suite: VUS-PR per domain, every row ranked (seeds {seed_txt}, mean ± std)",
           "", *_table(summary, [*doms, "overall"], "vus_pr", "domain"), ""]
    has_baseline = any(b in BASELINES and b != "random" for b in summary["detectors"])
    for d in summary["detectors"]:
        if d in MODELS and has_baseline:  # (a run of the models alone has no wins to count)
            w = wins(summary, d)
            out.append(
                f"- {d}: above the best baseline on {w['win']} of {w['n']} series by VUS-PR "
                f"({w['tie']} tied, {w['loss']} below); largest PR-AUC lead of \\|Δx\\| over it: "
                f"{w['diff_margin_pr_auc']:+.3f} ({w['diff_worst_series']})"
            )
    out += ["", "### VUS-PR per series", "",
            *_table(summary, [*summary["series"], "overall"], "vus_pr", "series"), ""]
    out += ["### PR-AUC per series", "",
            *_table(summary, [*summary["series"], "overall"], "pr_auc", "series"), ""]
    out += ["### ROC-AUC per series", "",
            *_table(summary, [*summary["series"], "overall"], "roc_auc", "series"), ""]
    models = [d for d in summary["detectors"] if d in MODELS]
    if models:
        out += ["### streamgen: other views (mean over series)", "",
                "| model | score, all rows (VUS-PR / PR / ROC) | calibrated, all rows | "
                "calibrated, warm rows only | cold rows | points/s |", "|---|---|---|---|---|---|"]
        for d in models:
            c = summary["cells"][f"overall/{d}"]

            def trio(prefix: str, c: dict[str, Any] = c) -> str:
                return " / ".join(_ms(c.get(prefix + k, [])) for k in ("vus_pr", "pr_auc",
                                                                        "roc_auc"))

            out.append(f"| {d} | {trio('')} | {trio('calibrated_')} | {trio('warm_only_')} | "
                       f"{_mean(c, 'cold_fraction'):.1%} | {_ms(c['points_per_s'], '{:,.0f}')} |")
    return "\n".join(out)


def to_json(results: list[RealResult], summary: dict[str, Any]) -> dict[str, Any]:
    return {"runs": [asdict(r) for r in results], "summary": summary}


__all__ = [
    "BASELINES",
    "DETECTORS",
    "MODELS",
    "RealResult",
    "detection_metrics",
    "format_markdown",
    "run_detector",
    "run_real_suite",
    "subpca_online_scores",
    "subpca_scores",
    "summarize",
    "to_json",
    "wins",
]
