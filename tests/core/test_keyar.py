"""Per-key autoregression: closed-form fit, forgetting, checkpoints, and its continuations in
the engine against last-value and the model's own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamgen.bench.synthetic import make_stream
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core import checkpoint
from streamgen.core.engine import Engine, Sinks
from streamgen.core.keyar import KeyAR
from streamgen.core.ports import RawMessage
from streamgen.io.files import ListSink
from streamgen.records import Position


def _spans(x: np.ndarray, n: int) -> np.ndarray:
    """(len - n + 1, n, C) sliding spans of a (len, C) series."""
    return np.stack([x[i : i + n] for i in range(len(x) - n + 1)])


def test_fit_is_ridge_least_squares_of_each_slot_on_its_own_spans():
    rng = np.random.default_rng(0)
    p, H = 3, 2
    ar = KeyAR(order=p, horizon=H, forget=1.0, ridge=0.5)
    ar.ensure(3)
    series = [rng.normal(size=(40, 2)), np.cumsum(rng.normal(size=(50, 2)), axis=0)]
    for slot, x in zip((0, 2), series, strict=True):
        spans = _spans(x, p + H)
        # Two calls (as two batches would) fit what one call does.
        ar.update(np.full(10, slot), spans[:10])
        ar.update(np.full(len(spans) - 10, slot), spans[10:])
        lags = np.concatenate([spans[:, :p], np.ones((len(spans), 1, 2))], axis=1)
        X = lags.transpose(0, 2, 1).reshape(-1, p + 1)  # channels are separate samples
        Y = spans[:, p:].transpose(0, 2, 1).reshape(-1, H)
        prior = np.zeros((p + 1, H))
        prior[p - 1] = 1.0
        want = np.linalg.solve(X.T @ X + 0.5 * np.eye(p + 1), X.T @ Y + 0.5 * prior)
        assert ar.coef(np.array([slot]))[0] == pytest.approx(want, rel=1e-4, abs=1e-5)
    # The untouched slot forecasts its last value (the prior), for every step.
    fc = ar.forecast(np.array([1]), np.arange(6.0).reshape(1, 3, 2))
    assert fc[0] == pytest.approx(np.array([[4.0, 5.0], [4.0, 5.0]]))


def test_forgetting_follows_a_change_of_dynamics():
    """AR(1) with coefficient +0.9, then -0.9: only forgetting the first regime fits the
    second."""
    rng = np.random.default_rng(2)

    def ar1(phi: float, n: int) -> np.ndarray:
        x = np.zeros((n, 1))
        for i in range(1, n):
            x[i] = phi * x[i - 1] + rng.normal()
        return x

    before, after = ar1(0.9, 600), ar1(-0.9, 600)

    def coef(forget: float) -> float:
        ar = KeyAR(order=1, horizon=1, forget=forget, ridge=1e-3)
        ar.ensure(1)
        for x in (before, after):
            s = _spans(x, 2)
            ar.update(np.zeros(len(s), np.int64), s)
        return float(ar.coef(np.zeros(1, np.int64))[0, 0, 0])

    assert coef(0.98) == pytest.approx(-0.9, abs=0.1)
    assert abs(coef(1.0)) < 0.3  # both regimes at once: neither


def test_state_round_trip_and_reset_on_another_shape():
    rng = np.random.default_rng(1)
    ar = KeyAR(order=4, horizon=2, forget=0.99, ridge=1.0)
    ar.ensure(2)
    ar.update(np.array([0, 1, 1]), rng.normal(size=(3, 6, 1)))
    state = ar.state_dict(np.array([1, 0]))
    back = KeyAR(order=4, horizon=2, forget=0.99, ridge=1.0)
    back.load_state_dict(state, [5, 3])
    assert np.array_equal(back.gram[5], ar.gram[1])
    assert np.array_equal(back.cross[3], ar.cross[0])
    other = KeyAR(order=6, horizon=2, forget=0.99, ridge=1.0)
    other.load_state_dict(state, [0, 1])
    assert not other.gram.any() and not other.cross.any()


# -- in the engine ---------------------------------------------------------------------------
SMALL = ["model.arch=mlp", "model.hidden=16", "model.latent=4", "window.length=32",
         "model.horizon=4", "calibrate.warmup_windows=10"]


def _continuation_errors(*extra: str, n_points: int = 900) -> tuple[float, float, float]:
    """MAE of the emitted continuations and of last-value forecasts, second half of a stream
    of sums of sinusoids without anomalies, all steps of the horizon; and the share of
    continuation errors within two spreads (nan without spreads)."""
    cfg = apply_overrides(PipelineConfig(), SMALL + list(extra))
    rows = make_stream(n_keys=3, n_points=n_points, anomalies_per_key=0, seed=5)
    values = {(r["key"], r["ts"]): r["x0"] for r in rows}
    conts = ListSink()
    eng = Engine(cfg, Sinks(scores=ListSink(), continuations=conts))
    msgs = [RawMessage(json.dumps(r).encode(), Position("t", 0, i)) for i, r in enumerate(rows)]
    for i in range(0, len(msgs), 256):
        eng.process(msgs[i : i + 256])
    start = rows[0]["ts"]
    model, last, covered = [], [], []
    for c in conts.rows:
        t = c["ts_ms"] // 1000
        if t - start < n_points // 2 or t - start + c["horizon"] >= n_points:
            continue
        actual = np.array([values[(c["key"], t + h)] for h in range(1, c["horizon"] + 1)])
        err = np.abs(np.array(c["forecast"])[:, 0] - actual)
        model.append(err.mean())
        last.append(np.abs(values[(c["key"], t)] - actual).mean())
        if "spread" in c:
            covered.extend(err <= 2 * np.array(c["spread"])[:, 0])
    coverage = float(np.mean(covered)) if covered else float("nan")
    return float(np.mean(model)), float(np.mean(last)), coverage


def test_continuations_of_the_per_key_fit_beat_last_value_and_the_model_alone():
    with_ar, last, _ = _continuation_errors()
    model_only, last_again, _ = _continuation_errors("model.ar_order=0")
    assert last_again == last
    assert with_ar < 0.5 * last
    assert with_ar < 0.9 * model_only


def test_spread_of_the_fit_covers_its_errors():
    """The emitted spread is each step's residual RMS: about 95 % of errors lie within two
    spreads on a stationary stream (SOTA has no spread of its own)."""
    coverage = _continuation_errors()[2]
    assert 0.85 < coverage < 0.995, coverage


def test_checkpoint_carries_the_fits():
    cfg = apply_overrides(PipelineConfig(), SMALL)
    rows = make_stream(n_keys=2, n_points=200, anomalies_per_key=0, seed=6)
    msgs = [RawMessage(json.dumps(r).encode(), Position("t", 0, i)) for i, r in enumerate(rows)]
    eng = Engine(cfg, Sinks())
    eng.process(msgs)
    assert eng.ar is not None and eng.ar.gram.any()
    state = checkpoint.keys_state(eng)
    again = Engine(cfg, Sinks())
    checkpoint.load_model_state(again, checkpoint.model_state(eng))
    checkpoint.load_keys_state(again, state)
    assert again.ar is not None
    for key, slot in eng.store.slots.items():
        other = again.store.slots[key]
        assert np.array_equal(again.ar.gram[other], eng.ar.gram[slot])
        assert np.array_equal(again.ar.cross[other], eng.ar.cross[slot])


def test_coefficients_are_solved_again_every_refresh_spans():
    from streamgen.core.keyar import _REFRESH

    rng = np.random.default_rng(3)
    ar = KeyAR(order=3, horizon=1, forget=1.0, ridge=1e-3)
    ar.ensure(1)
    slot = np.zeros(1, np.int64)
    lags = rng.normal(size=(1, 3, 1))
    x = np.sin(np.arange(200.0) / 3)[:, None]
    spans = _spans(x, 4)
    ar.update(np.zeros(50, np.int64), spans[:50])  # 50 >= _REFRESH: solved at the next call
    first = ar.forecast(slot, lags)
    c = ar.coef(slot)[0]  # (p + 1, H)
    assert first[0, :, 0] == pytest.approx(lags[0, :, 0] @ c[:3] + c[3], rel=1e-5)
    for k in range(1, _REFRESH + 1):
        ar.update(slot, 3 * spans[50 + k : 51 + k])  # other dynamics: the fit moves
        fc = ar.forecast(slot, lags)
        if k < _REFRESH:
            assert np.array_equal(fc, first)  # the cached coefficients
    assert not np.allclose(fc, first)
