"""streamgen inside River: :class:`streamgen.river.StreamgenDetector` (issue #16)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from river import anomaly, checks, compose, metrics, preprocessing

from streamgen.bench.suite import _from_rows, engine_run, make_suite
from streamgen.bench.synthetic import make_stream
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.errors import ConfigError
from streamgen.river import StreamgenDetector

SMALL = {"window": 16}


def test_the_module_name_does_not_shadow_river():
    import river

    assert "streamgen" not in river.__file__
    assert sys.modules["river"] is river
    assert isinstance(StreamgenDetector(), river.base.AnomalyDetector)


# -- River's own estimator checks ------------------------------------------------------------
def _dataset() -> list[tuple[dict[str, float], bool]]:
    """A labelled 5-feature series (River's checks drop up to 3 features at random). River's
    checks use datasets.CreditCard, a download: this stands in for it."""
    rows = make_stream(n_keys=1, n_points=300, n_channels=5, seed=1, warmup_points=120,
                       anomalies_per_key=3, kinds=("spike", "level_shift"))
    return [({f"x{c}": r[f"x{c}"] for c in range(5)}, bool(r["is_anomaly"])) for r in rows]


_CHECKS = list(checks.yield_checks(StreamgenDetector(**SMALL)))


def test_river_yields_its_anomaly_detector_checks():
    names = {c.__name__ for c in _CHECKS}
    # the checks that apply to an anomaly detector; the mini-batch checks are for
    # classifiers, regressors and transformers, the seeding check for a model whose seed
    # defaults to None (this one's is 0: reproducible by default)
    assert {"check_roc_auc", "check_shuffle_features_no_impact", "check_pickling",
            "check_clone_is_independent", "check_bounded_memory_growth"} <= names
    assert "check_seeding_is_idempotent" not in names


@pytest.mark.parametrize("check", _CHECKS, ids=lambda c: c.__name__)
def test_river_estimator_check(check):
    det = StreamgenDetector(**SMALL)
    if "dataset" in getattr(check, "keywords", {}):
        # Same check, on the stand-in data set. check_bounded_memory_growth runs at 300
        # points, not River's 10,000: the engine's per-key state and replay buffer are
        # allocated at the first point, so growth would show at any length.
        check.func(det.clone(), dataset=iter(_dataset()))
    else:
        check(det.clone())


# -- the score-then-learn contract -----------------------------------------------------------
def _series(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = np.sin(2 * np.pi * t / 12) + 0.1 * rng.normal(size=n)
    return [{"a": float(a), "b": float(2 * a + 1)} for a in v]


def test_score_then_learn_processes_each_point_once():
    xs = _series(150)
    det = StreamgenDetector(**SMALL)
    for i, x in enumerate(xs):
        s = det.score_one(x)
        assert det.score_one(dict(x)) == s  # an equal x before learn_one: the same score
        det.learn_one(x)  # the learn of the scored point: no-op
        assert det.n_points == i + 1
    det.learn_one(xs[0])  # not scored first: processed
    det.learn_one(xs[1])
    assert det.n_points == len(xs) + 2
    assert math.isfinite(det.score_one(xs[2])) and det.n_points == len(xs) + 3


def test_the_scores_are_the_engines_on_the_same_points():
    """score_one/learn_one, score_many in one-record micro-batches, and score_many in
    default micro-batches next to the engine run as `streamgen score` runs it (the
    benchmark's engine_run) over the same series."""
    xs = _series(300)
    one = StreamgenDetector(**SMALL)
    per_point = []
    for x in xs:
        per_point.append(one.score_one(x))
        one.learn_one(x)
    X = pd.DataFrame(xs)
    batch1 = StreamgenDetector(**SMALL, overrides=("batch.max_records=1",)).score_many(X)
    np.testing.assert_array_equal(per_point, batch1.to_numpy())
    assert (batch1.index == X.index).all()

    # (a micro-batch is scored by the state before it: the first one of a fresh
    # detector is all cold, 0)
    sets = ("window.length=16", "batch.max_records=100")
    many = StreamgenDetector(overrides=sets).score_many(X)
    rows = [{"key": "s", "ts": 1_700_000_000 + i, "x0": x["a"], "x1": x["b"],
             "is_anomaly": 0} for i, x in enumerate(xs)]
    cols, *_ = engine_run("sota", _from_rows("s", rows, 1, 0), seed=0, overrides=list(sets),
                          fields=("score",))
    np.testing.assert_allclose(many.to_numpy(), np.array(cols["score"], float))
    assert np.abs(many.to_numpy()[200:]).max() > 0  # not all cold


def test_features_missing_bad_or_new_later():
    det = StreamgenDetector(**SMALL)
    assert det.score_one({"name": "only text"}) == 0.0  # no numeric feature yet: no point
    det.learn_one({"name": "only text"})
    assert det.channels is None and det.n_points == 0
    xs = _series(80)
    for x in xs:
        det.learn_one({**x, "label": "ignored"})
    assert det.channels == ["a", "b"]
    for x in ({"a": 1.0}, {"a": float("nan"), "b": 2.0}, {"a": 1e40, "b": -math.inf},
              {"a": 0.5, "b": 1.0, "c": 9.0}, {"a": True, "b": None}):
        assert math.isfinite(det.score_one(x))
        det.learn_one(x)
    assert det.n_points == 85


def test_probability_maps_the_score_into_0_1():
    xs = _series(120)
    raw, prob = StreamgenDetector(**SMALL), StreamgenDetector(**SMALL, probability=True)
    for x in xs:
        s, p = raw.score_one(x), prob.score_one(x)
        raw.learn_one(x)
        prob.learn_one(x)
        assert 0.0 <= p <= 1.0
        assert p == pytest.approx(0.5 * math.erfc(-s / math.sqrt(2)))


# -- configuration and clone -----------------------------------------------------------------
def test_built_from_a_pipeline_and_keyword_overrides(tmp_path):
    cfg = apply_overrides(PipelineConfig(), ["window.length=24", "model.name=rvae"])
    assert StreamgenDetector(pipeline=cfg).config.window.length == 24
    det = StreamgenDetector(model="sota", window=32, seed=3, pipeline=cfg,
                            overrides=("calibrate.threshold=5",))
    c = det.config
    assert (c.model.name, c.window.length, c.model.seed, c.calibrate.threshold) == (
        "sota", 32, 3, 5.0)
    p = tmp_path / "p.yaml"
    p.write_text("window:\n  length: 20\n")
    assert StreamgenDetector(pipeline=str(p)).config.window.length == 20
    with pytest.raises(ConfigError, match="did you mean window.length"):
        StreamgenDetector(overrides=("window.lenght=8",))
    with pytest.raises(ConfigError, match="window.length"):
        StreamgenDetector(window=1)


def test_clone_is_fresh_and_keeps_the_parameters():
    cfg = apply_overrides(PipelineConfig(), ["model.hidden=32"])
    det = StreamgenDetector(model="rvae", window=16, seed=2, pipeline=cfg)
    for x in _series(40):
        det.learn_one(x)
    c = det.clone()
    assert c is not det and c.n_points == 0 and c.channels is None
    assert c._get_params() == det._get_params()
    assert c.config.model.hidden == 32 and c.config.model.name == "rvae"
    assert det.clone({"window": 24}).config.window.length == 24


# -- inside River pipelines ------------------------------------------------------------------
def test_inside_a_river_pipeline():
    xs = _series(120)
    model = compose.Pipeline(preprocessing.StandardScaler(), StreamgenDetector(**SMALL))
    det = model["StreamgenDetector"]
    for i, x in enumerate(xs):
        # the scaler learns between score_one and learn_one, so the detector sees two
        # slightly different x for one point: it still processes the point once
        assert math.isfinite(model.score_one(x))
        model.learn_one(x)
        assert det.n_points == i + 1
    model.learn_many(pd.DataFrame(xs[:50]))  # River's mini-batch path reaches the detector
    assert det.n_points == len(xs) + 50
    # behind an anomaly filter, which scores each point twice
    filt = anomaly.ThresholdFilter(StreamgenDetector(**SMALL), threshold=4.0)
    for x in xs:
        filt.score_one(x)
        filt.learn_one(x)
    assert filt.anomaly_detector.n_points == len(xs)
    assert compose.Pipeline(preprocessing.StandardScaler(), StreamgenDetector()).clone()


def test_progressive_validation_against_half_space_trees(capsys):
    """Score then learn every point of one labelled series (the benchmark's quick
    level-shift stream, first key: 1,500 points, 192 labelled), as River evaluates anomaly
    detectors; ROC-AUC with River's metrics."""
    s = next(s for s in make_suite(quick=True, seed=0) if s.name == "level_shift")
    values, labels = s.values[0], s.labels[0]
    n = len(labels)
    dets = {
        "streamgen": StreamgenDetector(probability=True),  # Φ(score): ROCAUC wants [0, 1]
        "hst": compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=0)),
    }
    # metrics.ROCAUC approximates over 10 thresholds in [0, 1]; RollingROCAUC over the
    # whole series is the exact ROC-AUC
    auc = {k: (metrics.ROCAUC(), metrics.RollingROCAUC(window_size=n)) for k in dets}
    for x_arr, y in zip(values, labels, strict=True):
        x = {f"x{c}": float(v) for c, v in enumerate(x_arr)}
        for k, det in dets.items():
            score = det.score_one(x)
            det.learn_one(x)
            for m in auc[k]:
                m.update(bool(y), score)
    got = {k: (m[0].get(), m[1].get()) for k, m in auc.items()}
    with capsys.disabled():
        print("\nROC-AUC (ROCAUC, exact):", {k: tuple(round(float(v), 3) for v in t)
                                           for k, t in got.items()})
    assert got["streamgen"][0] > 0.5 and got["streamgen"][1] > 0.5
