"""The detection benchmark: its metrics always, its quick suite under ``-m bench``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamgen.bench import suite as benchsuite
from streamgen.models.registry import MODEL_NAMES


def test_suite_streams_are_labelled_and_keyed_in_time_order():
    suite = benchsuite.make_suite(quick=True, seed=1)
    assert len({s.name for s in suite}) == len(suite) >= 8
    for s in suite:
        K, N, C = s.values.shape
        assert len(s.rows) == K * N and s.labels.shape == (K, N)
        assert s.labels[:, : s.warmup].sum() == 0 and s.labels.any()
        assert s.rows[K]["x0"] == pytest.approx(s.values[0, 1, 0])  # row i*K + k


FAST = ["model.arch=mlp", "model.hidden=16", "model.warmup_steps=5"]


def test_a_seed_reproduces_a_run_and_another_seed_changes_it():
    s = benchsuite.make_suite(quick=True, seed=0)[1]
    a = benchsuite.run_streamgen("sota", s, seed=0, overrides=FAST)
    b = benchsuite.run_streamgen("sota", s, seed=0, overrides=FAST)
    c = benchsuite.run_streamgen("sota", s, seed=1, overrides=FAST)  # same stream, other init
    key = ("roc_auc", "pr_auc", "pr_auc_calibrated")
    assert [getattr(a, k) for k in key] == [getattr(b, k) for k in key]
    assert a.forecast == b.forecast
    assert [getattr(a, k) for k in key] != [getattr(c, k) for k in key]
    h1, h2 = benchsuite.run_baseline("hst", s, seed=3), benchsuite.run_baseline("hst", s, seed=3)
    assert (h1.roc_auc, h1.pr_auc) == (h2.roc_auc, h2.pr_auc)
    assert benchsuite.make_suite(quick=True, seed=0)[1].rows == s.rows
    assert benchsuite.make_suite(quick=True, seed=1)[1].rows != s.rows


def test_probation_outlasts_the_engine_warm_up_in_the_quick_suite():
    """Points scored while the engine is cold (calibrated score 0) must not be judged: the
    quick suite once evaluated 6 of its 20 spike points so."""
    suite = benchsuite.make_suite(quick=True, seed=0)
    for s in (suite[0], suite[-1]):  # 4 keys; many keys (fewer points per key per batch)
        r = benchsuite.run_streamgen(
            "sota", s, seed=0, overrides=["model.arch=mlp", "model.hidden=16"]
        )
        assert r.cold_fraction == 0.0, s.name


def _fake_results(pr: dict[str, dict[str, list[float]]], cal: float = 0.05) -> list:
    """RunResults with given PR-AUCs per stream and detector (one value per seed)."""
    out = []
    for stream, by_det in pr.items():
        for det, vals in by_det.items():
            for seed, v in enumerate(vals):
                r = benchsuite.RunResult(det, stream, seed, roc_auc=0.5, pr_auc=v, points_per_s=1.0)
                if det not in benchsuite.BASELINES:
                    r.pr_auc_calibrated = v + cal
                    r.forecast = {"model": 1.0, "last": 1.0, "snaive": 1.0, "ratio": 1.0}
                out.append(r)
    return out


def test_pr_table_has_raw_and_calibrated_columns_wins_losses_and_a_mean_row():
    pr = {
        "a": {
            "sota": [0.5, 0.6, 0.7],
            "rvae": [0.2, 0.2, 0.2],
            "hst": [0.3, 0.3, 0.3],
            "rolling_z": [0.1, 0.1, 0.1],
            "diff": [0.4, 0.65, 0.4],
        },
        "b": {
            "sota": [0.2, 0.2, 0.2],
            "rvae": [0.9, 0.9, 0.9],
            "hst": [0.3, 0.3, 0.3],
            "rolling_z": [0.1, 0.1, 0.1],
            "diff": [0.2, 0.2, 0.2],
        },
    }
    summary = benchsuite.summarize(_fake_results(pr))
    # sota: stream a beats the best baseline on the mean (0.600 > 0.483) but loses seed 1
    # (0.6 < 0.65); stream b loses.
    wl = benchsuite.wins_losses(summary, "sota")
    assert (wl["win"], wl["loss"], wl["win_runs"], wl["loss_runs"]) == (1, 1, 2, 4)
    # Calibrated (+0.05): 0.25 vs 0.3 on b still loses, a wins all seeds but 0.65 = 0.65 ties.
    wlc = benchsuite.wins_losses(summary, "sota", "pr_auc_calibrated")
    assert (wlc["win_runs"], wlc["tie_runs"], wlc["loss_runs"]) == (2, 1, 3)
    lines = benchsuite.format_pr_table(summary).splitlines()
    assert lines[0].split(" | ")[1:3] == ["sota (raw)", "sota (cal)"]
    assert "HST" in lines[0] and "rolling z" in lines[0] and "Δx" in lines[0]
    assert lines[2].startswith("| a | 0.600 ± 0.100 | **0.650 ± 0.100** |")
    assert lines[-2].startswith("| wins–losses") and "1–1 · 2–4" in lines[-2]
    assert lines[-1].startswith("| mean of 2 streams | 0.400 ± 0.050 |")
    assert "**0.600 ± 0.000**" in lines[-1]  # rvae (cal) has the best mean: bold
    md = benchsuite.format_markdown(summary)
    assert md.count("\n| stream |") == 3  # PR-AUC, ROC-AUC, forecast


def test_bench_cli_writes_the_markdown_table_and_rejects_bad_seeds(tmp_path, capsys):
    from streamgen.cli import main

    md, js = tmp_path / "t.md", tmp_path / "t.json"
    args = [
        "bench",
        "--quick",
        "--quiet",
        "--streams",
        "spikes",
        "--detectors",
        "sota,rolling_z,diff",
        "--seed",
        "2",
        "--json",
        str(js),
        "--markdown",
        str(md),
    ]
    assert main(args + [a for f in FAST for a in ("--set", f)]) == 0
    text = md.read_text()
    assert "| stream | sota (raw) | sota (cal) | rolling z |" in text
    assert "| mean of 1 streams |" in text and "wins–losses" in text
    assert text.strip() in capsys.readouterr().out
    assert {r["seed"] for r in json.loads(js.read_text())["runs"]} == {2}
    assert main(["bench", "--quick", "--seed", "-1"]) == 2
    assert "--seed" in capsys.readouterr().err


@pytest.mark.bench
def test_quick_benchmark_runs_end_to_end(tmp_path):
    from streamgen.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--quiet", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    runs = data["runs"]
    assert {r["detector"] for r in runs} == set(benchsuite.DETECTORS)
    for r in runs:
        assert 0.0 <= r["pr_auc"] <= 1.0 and r["points_per_s"] > 0
    model_runs = [r for r in runs if r["detector"] in MODEL_NAMES]
    assert all(np.isfinite(r["forecast"]["model"]) for r in model_runs)
    assert all(r["cold_fraction"] == 0.0 for r in model_runs)
    overall = data["summary"]["cells"]
    # The models must beat the simple baselines overall on the quick suite.
    for m in MODEL_NAMES:
        hst = np.mean(overall["overall/hst"]["pr_auc"])
        assert np.mean(overall[f"overall/{m}"]["pr_auc"]) > hst
