"""Normalizer: the batch fold is the point-by-point update, statistics as of each point."""

from __future__ import annotations

import numpy as np
import pytest

from streamgen.config import NormalizeConfig
from streamgen.core.normalize import Normalizer


@pytest.mark.parametrize("channels", [1, 3, 12])  # 12: the numpy path for many channels
def test_fold_matches_update_point_by_point(channels):
    rng = np.random.default_rng(channels)
    cfg = NormalizeConfig(half_life=20, freeze_z=3.0)
    ref, new = Normalizer(cfg, channels), Normalizer(cfg, channels)
    ref.ensure(4)
    new.ensure(4)
    for batch in range(6):
        # Segments: (slot, fresh, frozen, live, points). Slot 3 changes hands mid-batch: its
        # first segment is not live, the second starts from nothing.
        segs = [(0, batch == 0, False, True, 7), (1, batch == 0, batch == 3, True, 12),
                (3, False, False, False, 4), (3, True, False, True, 5)]
        x = rng.normal(size=(sum(s[4] for s in segs), channels)) * (1 + batch)
        x[::9] += 50.0  # outliers: not folded once the key is warm
        before, after, i = [], [], 0
        for slot, fresh, frozen, _live, m in segs:
            if fresh:
                ref.reset(slot)
            for _ in range(m):
                before.append((ref.mean[slot].copy(), ref.std(slot)))
                ref.update(slot, x[i], frozen=frozen)
                after.append((ref.mean[slot].copy(), ref.std(slot)))
                i += 1
        out = new.fold(
            np.array([s[0] for s in segs]), np.array([s[1] for s in segs]),
            np.array([s[2] for s in segs]), np.flatnonzero([s[3] for s in segs]),
            np.array([s[4] for s in segs]), x,
        )
        np.testing.assert_array_equal(out[0], np.stack([b[0] for b in before]))
        np.testing.assert_array_equal(out[1], np.stack([b[1] for b in before]))
        np.testing.assert_array_equal(out[2], np.stack([a[0] for a in after]))
        np.testing.assert_array_equal(out[3], np.stack([a[1] for a in after]))
        for name in ("mean", "var", "sd", "count"):
            np.testing.assert_array_equal(getattr(new, name), getattr(ref, name), name)


def _one_slot(n: int, shift_at: int, shift: float, channels: int = 1, seed: int = 0):
    x = np.random.default_rng(seed).normal(size=(n, channels))
    x[shift_at:] += shift
    return x


@pytest.mark.parametrize("channels", [1, 12])
def test_a_level_that_moved_for_good_restarts_the_statistics(channels):
    cfg = NormalizeConfig(half_life=50)
    norm = Normalizer(cfg, channels)
    norm.ensure(1)
    x = _one_slot(1000, 400, 10.0, channels)  # 10 sigma up at point 400, for good
    for p in x:
        norm.update(0, p)
    # Kept out for max_rejected points, then restarted at the new level.
    assert np.allclose(norm.mean[0], 10.0, atol=0.5)
    assert norm.rejected[0] == 0 and norm.count[0] < 1000 - 400


def test_a_shorter_anomaly_does_not_move_the_statistics():
    norm = Normalizer(NormalizeConfig(half_life=50), 1)
    norm.ensure(1)
    x = _one_slot(700, 400, 10.0)
    x[400 + Normalizer.max_rejected - 10 :] -= 10.0  # back before the restart
    for p in x:
        norm.update(0, p)
    assert abs(norm.mean[0, 0]) < 0.5


@pytest.mark.parametrize("channels", [1, 3, 12])  # one channel, a few, the numpy path
def test_fold_matches_update_through_a_restart(channels):
    cfg = NormalizeConfig(half_life=50)
    ref, new = Normalizer(cfg, channels), Normalizer(cfg, channels)
    ref.ensure(1)
    new.ensure(1)
    x = _one_slot(900, 300, 10.0, channels)
    for lo in range(0, len(x), 64):  # batches that cut through the run of rejections
        chunk = x[lo : lo + 64]
        out = new.fold(np.array([0]), np.array([lo == 0]), np.array([False]), np.array([0]),
                       np.array([len(chunk)]), chunk)  # fmt: skip
        for i, p in enumerate(chunk):
            np.testing.assert_array_equal(out[0][i], ref.mean[0])
            ref.update(0, p)
    np.testing.assert_array_equal(new.mean[0], ref.mean[0])
    assert new.rejected[0] == ref.rejected[0]


def test_state_without_a_rejected_run_still_loads():
    norm = Normalizer(NormalizeConfig(), 1)
    norm.ensure(2)
    state = norm.state_dict(np.array([0, 1]))
    del state["rejected"]
    Normalizer(NormalizeConfig(), 1).load_state_dict(state, [0, 1])


def test_engine_follows_a_level_that_moved_for_good():
    """Through the engine: 10 sd up for good on one key. The calibrator stops flagging after
    its run limit; the normalizer, which keeps every such point out as an outlier, restarts
    after as many and then scales the key at its new level."""
    import json

    from streamgen.config import PipelineConfig, apply_overrides
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.records import Position

    cfg = apply_overrides(PipelineConfig(), ["model.arch=mlp", "model.hidden=16",
                                             "model.warmup_steps=5"])  # fmt: skip
    rng = np.random.default_rng(0)
    msgs = []
    for i in range(1200):
        x = np.sin(2 * np.pi * i / 20) + 0.3 * rng.normal() + (7.6 if i >= 400 else 0.0)
        row = {"key": "k", "ts": 1_700_000_000 + i, "x": round(float(x), 5)}
        msgs.append(RawMessage(json.dumps(row).encode(), Position("t", 0, i)))
    eng = Engine(cfg, Sinks())
    for j in range(0, len(msgs), 256):
        eng.process(msgs[j : j + 256])
    assert eng.store is not None and eng.normalizer is not None
    slot = eng.store.slots["k"]
    assert abs(eng.normalizer.mean[slot, 0] - 7.6) < 1.0
