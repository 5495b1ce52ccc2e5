"""The detection benchmark: its metrics always, its quick suite under ``-m bench``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamgen import benchsuite


def test_metrics_match_their_definitions():
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.8])
    y = np.array([0, 0, 1, 1, 0])
    # Pairs (pos, neg): (0.35: beats 0.1 only) + (0.8: beats 0.1, 0.4, ties 0.8) over 6 pairs.
    assert benchsuite.roc_auc(s, y) == pytest.approx((1 + 2.5) / 6)
    # Thresholds 0.8 (P=1/2, R=1/2) and 0.35 (P=2/4, R=1): AP = 0.5*0.5 + 0.5*0.5.
    assert benchsuite.average_precision(s, y) == pytest.approx(0.5)
    assert np.isnan(benchsuite.average_precision(s, np.zeros(5)))


def test_suite_streams_are_labelled_and_keyed_in_time_order():
    suite = benchsuite.make_suite(quick=True, seed=1)
    assert len({s.name for s in suite}) == len(suite) >= 8
    for s in suite:
        K, N, C = s.values.shape
        assert len(s.rows) == K * N and s.labels.shape == (K, N)
        assert s.labels[:, : s.warmup].sum() == 0 and s.labels.any()
        assert s.rows[K]["x0"] == pytest.approx(s.values[0, 1, 0])  # row i*K + k


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
    model_runs = [r for r in runs if r["detector"] in ("sota", "rvae")]
    assert all(np.isfinite(r["forecast"]["model"]) for r in model_runs)
    overall = data["summary"]["cells"]
    # The models must beat the simple baselines overall on the quick suite.
    for m in ("sota", "rvae"):
        hst = np.mean(overall["overall/hst"]["pr_auc"])
        assert np.mean(overall[f"overall/{m}"]["pr_auc"]) > hst
