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
