"""One model for a consumer group (streamgen.merge): federated averaging through the store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine
from streamgen.core.ports import RawMessage
from streamgen.io.store import CheckpointStore, LocalBackend
from streamgen.merge import GROUP, GroupModel, weights_digest
from streamgen.records import Position


class Member:
    """A stand-in learner: one weight vector and a step counter."""

    def __init__(self, w: list[float]) -> None:
        self.w = {"p": torch.tensor(w)}
        self.steps = 0

    def model_weights(self):
        return {k: v.clone() for k, v in self.w.items()}

    def load_model_weights(self, w):
        self.w = {k: v.clone() for k, v in w.items()}

    @property
    def step(self):
        return self.steps

    def train(self, delta: list[float], steps: int) -> None:
        self.w["p"] = self.w["p"] + torch.tensor(delta)
        self.steps += steps


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(LocalBackend(tmp_path), "file")


def test_merge_is_the_step_weighted_mean_of_the_members_progress(store):
    a, b, c = Member([0.0, 0.0]), Member([0.0, 0.0]), Member([0.0, 0.0])
    ga, gb, gc = (GroupModel(store, m) for m in "abc")
    for g, m in ((ga, a), (gb, b), (gc, c)):
        g.start(m)
    a.train([4.0, 0.0], 10)
    b.train([0.0, 2.0], 30)
    # c did not train: it contributes nothing and does not dilute the others.
    gb.sync(b, coordinator=False)
    gc.sync(c, coordinator=False)
    res = ga.sync(a, coordinator=True)
    assert res.merged == 2 and res.adopted == 1
    np.testing.assert_allclose(a.w["p"].numpy(), [1.0, 1.5])  # (10*4, 30*2) / 40
    for g, m in ((gb, b), (gc, c)):
        assert g.sync(m, coordinator=False).adopted == 1
    digests = {weights_digest(m.w) for m in (a, b, c)}
    assert len(digests) == 1  # an idle group agrees on one set of weights


def test_progress_after_publishing_is_kept_through_adoption(store):
    a, b = Member([0.0]), Member([0.0])
    ga, gb = GroupModel(store, "a"), GroupModel(store, "b")
    ga.start(a)
    gb.start(b)
    b.train([2.0], 10)
    gb.sync(b, coordinator=False)  # publishes +2
    b.train([1.0], 5)  # learns more before the merge reaches it
    a.train([4.0], 10)
    ga.sync(a, coordinator=True)  # version 1 = 0 + (10*4 + 10*2) / 20 = 3
    res = gb.sync(b, coordinator=False)
    assert res.adopted == 1
    assert float(b.w["p"]) == pytest.approx(3.0 + 1.0)  # the group's, plus b's unmerged +1
    # b's unmerged progress goes into the next version (5 steps from version 1).
    gb.sync(b, coordinator=False)
    ga.sync(a, coordinator=True)
    assert ga.version == 2 and float(a.w["p"]) == pytest.approx(4.0)


def test_a_contribution_from_an_older_version_is_not_merged_but_reapplied(store):
    a, b = Member([0.0]), Member([0.0])
    ga, gb = GroupModel(store, "a"), GroupModel(store, "b")
    ga.start(a)
    gb.start(b)
    a.train([1.0], 10)
    ga.sync(a, coordinator=True)  # version 1 from a alone
    b.train([3.0], 10)
    gb.sync(b, coordinator=False)  # published from version 0: stale, then adopts 1
    assert gb.version == 1 and float(b.w["p"]) == pytest.approx(1.0 + 3.0)
    ga.sync(a, coordinator=True)  # b's stale contribution is skipped...
    assert ga.version == 1
    gb.sync(b, coordinator=False)  # ...and b publishes it again from version 1
    ga.sync(a, coordinator=True)
    assert ga.version == 2 and float(a.w["p"]) == pytest.approx(4.0)


def test_a_new_member_starts_from_the_group_model(store):
    a = Member([0.0])
    ga = GroupModel(store, "a")
    ga.start(a)
    a.train([5.0], 10)
    ga.sync(a, coordinator=True)
    late = Member([-7.0])
    assert GroupModel(store, "late").start(late) == 1
    assert float(late.w["p"]) == pytest.approx(5.0)
    assert store.load(GROUP)["version"] == 1


def test_members_that_left_age_out(store):
    a, b = Member([0.0]), Member([0.0])
    ga, gb = GroupModel(store, "a", forget_after_s=0.0), GroupModel(store, "b")
    ga.start(a)
    gb.start(b)
    b.train([1.0], 3)
    gb.sync(b, coordinator=False)
    res = ga.sync(a, coordinator=True)
    assert "b" in res.stale_contributions and store.load("members/b") is None


def _engine(seed: int) -> Engine:
    cfg = apply_overrides(PipelineConfig(), ["model.device=cpu", f"model.seed={seed}"])
    return Engine(cfg)


def _feed(eng: Engine, key: str, n: int, phase: float, start: int = 0) -> None:
    rows = [{"key": key, "ts": 1_700_000_000 + i, "x": float(np.sin(i / 6 + phase))}
            for i in range(start, start + n)]
    msgs = [RawMessage(json.dumps(r).encode(), Position("t", 0, i)) for i, r in enumerate(rows)]
    for i in range(0, len(msgs), 512):
        eng.process(msgs[i : i + 512])


def test_engines_of_a_group_converge_on_one_model(store):
    """Three engines learning different keys: after merge rounds with no new input, every
    member holds the same weights (same digest) and the same version."""
    engines = [_engine(s) for s in range(3)]
    groups = [GroupModel(store, f"m{i}") for i in range(3)]
    for i, eng in enumerate(engines):
        _feed(eng, f"k{i}", 1500, phase=i)
        groups[i].start(eng)
    for rnd in range(2):
        for i, eng in enumerate(engines):
            _feed(eng, f"k{i}", 600, phase=i, start=1500 + 600 * rnd)
        for i in (1, 2, 0):
            groups[i].sync(engines[i], coordinator=(i == 0))
    for _ in range(3):  # idle rounds: the last unmerged progress goes in, then nothing new
        for i in (1, 2, 0):
            groups[i].sync(engines[i], coordinator=(i == 0))
    for i in (1, 2):  # the members adopt what the coordinator merged last
        groups[i].sync(engines[i], coordinator=False)
    versions = {g.version for g in groups}
    digests = {weights_digest(e.model_weights()) for e in engines}
    assert len(versions) == 1 and versions.pop() >= 2
    assert len(digests) == 1
    # The merged model still scores: the engines go on processing after adopting it.
    _feed(engines[1], "k1", 300, phase=1, start=9000)
