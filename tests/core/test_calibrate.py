"""Per-key calibration: flagged windows are protected, but a permanent change cannot deadlock
a key (it stops being flagged after a bounded number of windows)."""

from __future__ import annotations

import numpy as np
import pytest

from streamgen.config import CalibrateConfig
from streamgen.core.calibrate import MAX_FLAGGED_RUN, Calibrator


def _scores(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """Raw scores shaped like the models' (sums of squared errors): scaled chi-square(4)."""
    rng = np.random.default_rng(seed)
    return scale * (rng.normal(size=(n, 4)) ** 2).sum(1)


def _flags(c: Calibrator, scores: np.ndarray, slot: int = 0) -> np.ndarray:
    out = np.zeros(len(scores), bool)
    for i, s in enumerate(scores):
        z, warm = c.observe(slot, float(s))
        out[i] = warm and z >= c.threshold
    return out


def _longest_run(flags: np.ndarray) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def test_permanent_shift_stops_being_flagged_after_a_bounded_run():
    cfg = CalibrateConfig()
    c = Calibrator(cfg)
    c.ensure(1)
    _flags(c, _scores(2000, 0))
    after = _flags(c, _scores(3000, 1, scale=1000.0))  # the key's error level changes for good
    assert after[:100].all()  # the change itself is flagged...
    # ...for no more than the cap (the restart), and the new level is normal from then on.
    assert not after[MAX_FLAGGED_RUN + cfg.warmup_windows :].any()
    assert after.sum() == MAX_FLAGGED_RUN


def test_quantile_method_recovers_from_a_permanent_shift_too():
    c = Calibrator(CalibrateConfig(method="quantile"))
    c.ensure(1)
    _flags(c, _scores(2000, 0))
    after = _flags(c, _scores(3000, 1, scale=1000.0))
    assert after[:100].all() and _longest_run(after) == MAX_FLAGGED_RUN
    # After the restart the key is a new key of the new level (the running quantile starts
    # low and converges slowly, so a few percent of windows are flagged for a while).
    assert after[-1000:].mean() < 0.1


def test_quantile_method_does_not_drift_down_on_stationary_scores():
    """Flagged scores still take their (bounded) quantile step: withheld, only downward steps
    remained and the flagged fraction grew to ~29% of a stationary stream."""
    c = Calibrator(CalibrateConfig(method="quantile"))
    c.ensure(1)
    flags = _flags(c, _scores(6000, 0))
    assert flags[-2000:].mean() < 0.05


def test_without_the_cap_a_permanent_shift_is_flagged_forever():
    """The deadlock the restart rule exists for (``max_flagged_run=0``: frozen for good)."""
    c = Calibrator(CalibrateConfig(), max_flagged_run=0)
    c.ensure(1)
    _flags(c, _scores(2000, 0))
    assert _flags(c, _scores(3000, 1, scale=1000.0)).all()


def test_spikes_and_anomalies_shorter_than_the_cap_stay_flagged_and_protected():
    c, ref = Calibrator(CalibrateConfig()), Calibrator(CalibrateConfig())
    c.ensure(1)
    ref.ensure(1)
    base = _scores(2000, 0)
    _flags(c, base)
    _flags(ref, base)
    assert _flags(c, np.array([500.0])).all()  # a one-window spike
    long = _flags(c, _scores(MAX_FLAGGED_RUN - 10, 2, scale=1000.0))
    assert long.all()  # flagged to the last window: no restart below the cap
    # Protected: the flagged windows left the statistics exactly as they were.
    assert c.mu[0] == ref.mu[0] and c.var[0] == ref.var[0] and c.count[0] == ref.count[0]
    tail = _flags(c, _scores(1000, 3))
    assert tail.mean() < 0.01  # back to normal at once, with the old statistics


def test_a_normal_window_ends_the_run():
    c = Calibrator(CalibrateConfig(), max_flagged_run=5)
    c.ensure(1)
    _flags(c, _scores(500, 0))
    hi = np.full(4, 500.0)
    assert _flags(c, hi).all() and int(c.run[0]) == 4
    _flags(c, np.array([float(np.median(_scores(500, 0)))]))
    assert int(c.run[0]) == 0 and int(c.count[0]) > 500
    assert _flags(c, hi).all()  # 4 more: still below the cap of 5 in a row


def test_restart_state_survives_a_checkpoint_and_old_checkpoints_load():
    c = Calibrator(CalibrateConfig(), max_flagged_run=50)
    c.ensure(2)
    for slot in (0, 1):
        _flags(c, _scores(300, slot), slot)
    _flags(c, np.full(7, 1e4), slot=1)
    state = c.state_dict(np.array([0, 1]))
    d = Calibrator(CalibrateConfig(), max_flagged_run=50)
    d.load_state_dict(state, [0, 1])
    assert d.run.tolist() == [0, 7] and d.count.tolist() == c.count.tolist()
    old = {k: v for k, v in state.items() if k != "run"}
    e = Calibrator(CalibrateConfig())
    e.load_state_dict(old, [0, 1])
    assert e.run.tolist() == [0, 0] and e.mu.tolist() == c.mu.tolist()


def test_engine_key_with_a_permanent_shift_stops_being_flagged():
    """Through the engine (MLP): a key whose level moves by 10 standard deviations for good
    (the normalizer, frozen beyond 6, never follows it) was flagged on every later window."""
    import json

    from streamgen.config import PipelineConfig, apply_overrides
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.io.files import ListSink
    from streamgen.records import Position

    cfg = apply_overrides(
        PipelineConfig(), ["model.arch=mlp", "model.hidden=16", "model.warmup_steps=5"]
    )
    rng = np.random.default_rng(0)
    n, shift_at, keys = 1300, 500, 2
    msgs = []
    for i in range(n):
        for k in range(keys):
            x = np.sin(2 * np.pi * i / (20 + 7 * k)) + 0.3 * rng.normal()
            x += 7.6 if (k == 0 and i >= shift_at) else 0.0  # the series' sd is about 0.76
            row = {"key": f"k{k}", "ts": 1_700_000_000 + i, "x": round(float(x), 5)}
            msgs.append(RawMessage(json.dumps(row).encode(), Position("t", 0, len(msgs))))
    sink = ListSink()
    eng = Engine(cfg, Sinks(scores=sink))
    for j in range(0, len(msgs), 512):
        eng.process(msgs[j : j + 512])
    flags = np.array([r["is_anomaly"] for r in sink.rows]).reshape(n, keys)[shift_at:, 0]
    assert flags[:50].all()
    assert flags.sum() <= MAX_FLAGGED_RUN and not flags[MAX_FLAGGED_RUN + 30 :].any()


@pytest.mark.parametrize("method", ["zscore", "quantile", "pot"])
def test_a_batch_on_local_indices_equals_slot_by_slot(method):
    """Between begin() and end() the calibrator works on Python lists through local indices
    (the engine's hot path); the state it writes back is the one slot-by-slot calls make."""
    cfg = CalibrateConfig(method=method, warmup_windows=20)
    c, ref = Calibrator(cfg, max_flagged_run=40), Calibrator(cfg, max_flagged_run=40)
    c.ensure(5)
    ref.ensure(5)
    scores = _scores(1500, 7)
    scores[400:600] *= 50  # flagged windows, then a restart after 40 in a row
    scores[::97] = 0.0
    slots = np.array([4, 1, 3])
    for start in range(0, len(scores), 250):
        c.begin(slots)
        for i in range(start, min(start + 250, len(scores))):
            s, loc, protect = float(scores[i]), i % 3, i % 5 != 0 or i > 300
            assert c.observe(loc, s, protect) == ref.observe(int(slots[loc]), s, protect)
            if i == 1000:
                c.reset(loc)
                ref.reset(int(slots[loc]))
        c.end()
    for name in ("mu", "var", "count", "run", "tail"):
        np.testing.assert_array_equal(getattr(c, name), getattr(ref, name), name)
