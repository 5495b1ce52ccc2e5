"""Real-data benchmark: metrics over every row, the baselines, the tables and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamgen.bench import real as benchreal
from streamgen.bench.realdata import available


def test_online_sub_pca_scores_a_window_only_from_the_past():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(1200) * 2 * np.pi / 30)[:, None] + 0.05 * rng.normal(size=(1200, 1))
    base = benchreal.subpca_online_scores(x, 30)
    y = x.copy()
    y[1000:1010] += 3.0  # a change late in the series
    changed = benchreal.subpca_online_scores(y, 30)
    np.testing.assert_array_equal(base[:1000], changed[:1000])  # nothing before it moves
    assert changed[1000:1040].max() > 10 * np.median(changed[200:1000])
    assert (base[:60] == 0).all()  # no score before two windows of history
    off = benchreal.subpca_scores(y, 30)
    assert off[:1000].max() != base[:1000].max()  # the offline one sees the future


def test_detection_metrics_rank_every_row():
    lab = np.zeros(100, bool)
    lab[50:55] = True
    perfect = lab.astype(float)
    m = benchreal.detection_metrics(perfect, lab, 10)
    assert m["pr_auc"] == 1.0 and m["roc_auc"] == 1.0 and m["vus_pr"] > 0.8
    flat = benchreal.detection_metrics(np.zeros(100), lab, 10)
    assert flat["roc_auc"] == 0.5
    assert np.isnan(benchreal.detection_metrics(perfect, np.zeros(100, bool), 10)["vus_pr"])


def _result(det, series, seed, vus, domain="d"):
    return benchreal.RealResult(det, series, domain, seed, vus, vus, 0.5 + vus / 2, 100.0)


def test_summary_tables_wins_and_the_diff_margin():
    res = []
    for seed in (0, 1):
        res += [_result("sota", "a", seed, 0.6), _result("diff", "a", seed, 0.4),
                _result("random", "a", seed, 0.9),  # random is a floor, never "the best"
                _result("sota", "b", seed, 0.2), _result("diff", "b", seed, 0.35)]
    summary = benchreal.summarize(res)
    w = benchreal.wins(summary, "sota")
    assert (w["win"], w["loss"], w["n"]) == (1, 1, 2)
    assert w["diff_margin_pr_auc"] == pytest.approx(0.15) and w["diff_worst_series"] == "b"
    md = benchreal.format_markdown(summary)
    assert "| domain | sota | random | \\|Δx\\| |" in md
    assert "| **mean of 2** | 0.400 ± 0.000 |" in md
    assert "above the best baseline on 1 of 2 series" in md
    # The models alone (no baseline but random): tables, no wins to count.
    alone = benchreal.summarize([r for r in res if r.detector in ("sota", "random")])
    md = benchreal.format_markdown(alone)
    assert "| **mean of 2** | 0.400 ± 0.000 |" in md and "above the best baseline" not in md


@pytest.mark.skipif(not available()[0], reason=available()[1])
def test_bench_cli_real_suite(tmp_path, capsys):
    from streamgen.cli import main

    js = tmp_path / "r.json"
    args = ["bench", "--suite", "real", "--quiet", "--seeds", "1", "--streams", "yahoo,gt_cbf",
            "--detectors", "sota,diff,subpca_online,random", "--json", str(js)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "VUS-PR per domain" in out and "Sub-PCA (online)" in out
    runs = json.loads(js.read_text())["runs"]
    assert {(r["series"], r["detector"]) for r in runs} == {
        (s, d) for s in ("yahoo", "gt_cbf") for d in ("sota", "diff", "subpca_online", "random")
    }
    for r in runs:
        assert 0.0 <= r["vus_pr"] <= 1.0 and 0.0 <= r["roc_auc"] <= 1.0
    sota = [r for r in runs if r["detector"] == "sota"]
    assert all(0.0 <= r["cold_fraction"] <= 1.0 and r["warm_only"] for r in sota)
    assert main(["bench", "--suite", "real", "--streams", "nope"]) == 2
