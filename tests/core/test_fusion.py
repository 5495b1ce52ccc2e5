"""The fused score: one scale from a key's first point on, cold rows below real anomalies,
detectors protecting their own baselines; the shape detector; peaks-over-threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from streamgen.config import CalibrateConfig, PipelineConfig, apply_overrides
from streamgen.core.calibrate import Calibrator
from streamgen.core.engine import Engine, Sinks
from streamgen.core.fusion import Fusion, tail_z
from streamgen.core.ports import RawMessage
from streamgen.core.shape import KeyShape
from streamgen.io.files import ListSink
from streamgen.records import Position


@pytest.mark.parametrize("n", [2, 3, 5, 11, 31, 101])
@pytest.mark.parametrize("z", [0.5, 2.0, 4.0, 8.0, 20.0])
def test_tail_z_matches_students_t_quantiles(z, n):
    nu = n - 1
    t = z / np.sqrt(1 + 1 / n)
    exact = stats.norm.isf(stats.t.sf(t, nu))
    tol = 0.2 if nu < 4 else 0.1 if nu < 12 else 0.05
    assert tail_z(z, n) == pytest.approx(exact, abs=tol)


def test_tail_z_is_monotone_in_evidence_and_zero_without_history():
    assert tail_z(50.0, 0) == 0.0 and tail_z(50.0, 1) == 0.0
    zs = [tail_z(8.0, n) for n in (3, 10, 100, 1000)]
    assert zs == sorted(zs) and zs[-1] < 8.0
    assert tail_z(8.0, 10**9, n_max=100) == pytest.approx(tail_z(8.0, 100))


def _fusion(**kw) -> Fusion:
    f = Fusion(CalibrateConfig(**kw))
    f.ensure(2)
    return f


def test_a_detector_that_fires_often_does_not_freeze_another_ones_baseline():
    f = _fusion(detectors=["model", "diff"], fusion="max")
    rng = np.random.default_rng(0)
    for i in range(400):
        model = float(rng.chisquare(4))
        diff = 1e4 if i % 2 else float(rng.chisquare(1))  # diff fires on every other record
        f.judge(0, [model, None, None, diff, None])
    # The model's values went into its statistics although the fused score was flagged on
    # every other record.
    assert f.cals["model"].count[0] >= 395


def test_max_and_stouffer_fusion():
    for rule in ("max", "stouffer"):
        f = _fusion(detectors=["model", "diff"], fusion=rule)
        rng = np.random.default_rng(1)
        for _ in range(500):
            f.judge(0, [float(rng.chisquare(4)), None, None, float(rng.chisquare(1)), None])
        score, alert, flagged, model_cal = f.judge(0, [500.0, None, None, 500.0, None])
        assert flagged and alert == score and model_cal is not None and model_cal > 4
        if rule == "stouffer":
            assert score > model_cal  # both detectors agree: the evidence adds up
        else:
            assert score >= model_cal
    assert _fusion().judge(1, [None, None, None, None, None]) == (0.0, 0.0, False, None)
    # Muted detectors rank but do not flag.
    f = _fusion(detectors=["model", "diff"], fusion="max")
    rng = np.random.default_rng(2)
    for _ in range(500):
        f.judge(0, [float(rng.chisquare(4)), None, None, float(rng.chisquare(1)), None])
    score, alert, flagged, _ = f.judge(0, [3.0, None, None, 500.0, None], mute_from=3)
    assert score > 4 and alert < 4 and not flagged


def _engine_rows(rows, *overrides):
    cfg = apply_overrides(PipelineConfig(), ["model.device=cpu", *overrides])
    sink = ListSink()
    eng = Engine(cfg, Sinks(scores=sink))
    msgs = [RawMessage(json.dumps(r).encode(), Position("t", 0, i)) for i, r in enumerate(rows)]
    for i in range(0, len(msgs), 256):
        eng.process(msgs[i : i + 256])
    return eng, sink.rows


def test_cold_rows_rank_below_a_real_anomaly_from_a_keys_first_point():
    """A new key's first points (noisy statistics, untrained model) must not outrank a clear
    anomaly later in the same stream: the ranking contract of the score column."""
    rng = np.random.default_rng(3)
    n = 1500
    x = np.sin(np.arange(n) * 2 * np.pi / 40) + 0.1 * rng.normal(size=n)
    x[:5] += rng.normal(scale=3.0, size=5)  # a rough start
    x[900] += 4.0  # the anomaly
    rows = [{"key": "k", "ts": 1_700_000_000 + i, "x": float(v)} for i, v in enumerate(x)]
    _, out = _engine_rows(rows)
    score = np.array([r["score"] for r in out], float)
    assert np.isfinite(score).all()
    # The spike, or a window that still holds it (the shape detector sees it as long as it
    # is in view), tops the ranking; nothing of the cold start comes near it.
    assert 900 <= int(np.argmax(score)) < 964
    assert score[:200].max() < score[900] - 2.0
    assert out[900]["is_anomaly"] and out[900]["calibrated"] == out[900]["score"]
    assert out[900]["raw_score"] is not None and out[0]["raw_score"] is None


def test_fused_checkpoint_state_round_trips(tmp_path):
    from streamgen.core.checkpoint import keys_state, load_keys_state

    rows = [{"key": k, "ts": 1_700_000_000 + i, "x": float(np.sin(i / 5) + (k == "b"))}
            for i in range(400) for k in "ab"]
    eng, _ = _engine_rows(rows)
    state = keys_state(eng)
    eng2, _ = _engine_rows(rows[:2])
    load_keys_state(eng2, state)
    for name in ("shape", "shape1"):
        a, b = eng.fusion.cals[name], eng2.fusion.cals[name]
        sa, sb = eng.store.slots, eng2.store.slots
        for k in "ab":
            assert a.count[sa[k]] == b.count[sb[k]] and a.mu[sa[k]] == b.mu[sb[k]]
    # Detectors that are off keep no per-slot statistics (nor checkpoint any).
    assert len(eng.fusion.cals["diff"].count) == 0 and "diff" not in state["fusion"]
    assert eng.shape is not None and eng2.shape is not None
    np.testing.assert_array_equal(eng.shape.mean[eng.store.slots["a"]],
                                  eng2.shape.mean[eng2.store.slots["a"]])


def test_shape_statistics_fold_in_batches_as_one_at_a_time():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 64, 2)).astype(np.float32)
    slots = rng.integers(0, 3, 300)
    a, b = KeyShape(64, 2, 16, 0.99), KeyShape(64, 2, 16, 0.99)
    a.ensure(3)
    b.ensure(3)
    a.update(slots, x)
    for i in range(300):
        b.update(slots[i : i + 1], x[i : i + 1])
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
    np.testing.assert_allclose(a.second, b.second, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(a.weight, b.weight, rtol=1e-5)


def test_shape_score_is_the_mahalanobis_distance_of_the_block_means():
    rng = np.random.default_rng(1)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    v = rng.multivariate_normal([0.5, -0.5], cov, size=20000)
    wins = np.repeat(v, 4, axis=1)[:, :, None].astype(np.float32)  # blocks of 4 → dim 2
    sh = KeyShape(8, 1, 2, 1.0, spans=(8,))
    sh.ensure(1)
    sh.update(np.zeros(len(wins), np.int64), wins)
    probe = np.repeat(np.array([[1.5, 0.5]]), 4, axis=1)[:, :, None].astype(np.float32)
    d = probe[0, ::4, 0] - np.array([0.5, -0.5])
    expect = d @ np.linalg.inv(cov + 0.001 * np.eye(2)) @ d
    assert sh.score(np.zeros(1, np.int64), probe)[0, 0] == pytest.approx(expect, rel=0.03)
    fresh = KeyShape(8, 1, 2, 1.0)
    fresh.ensure(1)
    assert fresh.spans == (8, 4)  # the whole window and its last half
    assert np.isnan(fresh.score(np.zeros(1, np.int64), probe)).all()  # no history: no score


def test_pot_tail_z_follows_the_true_tail_and_ranks_monotonically():
    c = Calibrator(CalibrateConfig(method="pot"))
    c.ensure(1)
    rng = np.random.default_rng(0)
    for s in rng.chisquare(1, 5000):
        c.observe(0, float(s))
    values = [3.0, 8.0, 15.0, 30.0, 60.0, 200.0]
    z = [c.calibrate(0, v) for v in values]
    assert z == sorted(z)
    truth = stats.norm.isf(stats.chi2.sf(8.0, 1))
    assert z[1] == pytest.approx(truth, abs=0.5)
    assert c.threshold == CalibrateConfig().threshold
    assert c.tail[0, 2] >= CalibrateConfig().pot_min_excesses  # the tail fit is in use
