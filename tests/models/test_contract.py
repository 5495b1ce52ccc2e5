"""One contract test over every registered online model (docs/architecture.md, "Add a model")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamgen.models.online import OnlineLearner
from streamgen.models.registry import MODEL_NAMES, model_settings, settings_class

W, H, C = 16, 4, 2
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _spans(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(W + H)[None, :, None] + rng.uniform(0, 20, (n, 1, 1))
    x = np.sin(2 * np.pi * t / 10.0) * np.array([1.0, 0.5])
    return (x + rng.normal(0, 0.05, x.shape)).astype(np.float32)


@pytest.fixture(params=MODEL_NAMES)
def name(request):
    return request.param


@pytest.mark.parametrize("arch", ["gru", "mlp"])
@pytest.mark.parametrize("device", DEVICES)
def test_online_model_contract(name, device, arch, tmp_path):
    rng = np.random.default_rng(0)
    # (the RVAE's KL warm-up shortened to fit the test)
    own = {"kl_anneal_steps": 50} if "kl_anneal_steps" in settings_class(name).model_fields else {}
    cfg = model_settings(name, arch=arch, hidden=32, latent=8, horizon=H, device=device,
                         lr=5e-3, train_batch=64, **own)
    lr = OnlineLearner(cfg, C, W)
    losses = []
    for _ in range(150):
        stats = lr.learn(_spans(64, rng))
        losses.append(stats["loss"])
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # it learns

    normal = _spans(64, rng)[:, :W]
    spiked = normal.copy()
    spiked[:, -1, 0] += 4.0  # an obvious spike on the newest point
    s_norm, s_spike = lr.score(normal), lr.score(spiked)
    assert np.isfinite(s_norm.point_score).all() and np.isfinite(s_spike.point_score).all()
    assert (s_norm.point_score >= 0).all()
    assert s_spike.point_score[:, -1].mean() > 3 * s_norm.point_score[:, -1].mean()

    assert s_norm.forecast.shape == (64, H, C)  # generate: the right shape
    assert lr.model.generate(torch.from_numpy(normal).to(lr.device)).shape == (64, H, C)
    # Continuations of a clean sine should beat a last-value forecast.
    future = _spans(64, rng)
    fc = lr.score(future[:, :W]).forecast
    model_mae = np.abs(fc - future[:, W:]).mean()
    naive_mae = np.abs(future[:, W - 1 : W] - future[:, W:]).mean()
    assert model_mae < naive_mae

    # Checkpoint round trip: identical scores from a fresh learner.
    from streamgen.core.checkpoint import FORMAT_VERSION

    path = tmp_path / "m.pt"
    torch.save({"format": FORMAT_VERSION, "learner": lr.state_dict()}, path)
    state = torch.load(path, weights_only=True)
    lr2 = OnlineLearner(cfg, C, W)
    lr2.load_state_dict(state["learner"])
    np.testing.assert_array_equal(lr2.score(normal).point_score, s_norm.point_score)
    assert lr2.step == lr.step


@pytest.mark.parametrize("arch", ["gru", "mlp"])  # mlp: SOTA's gradients set by hand
def test_non_finite_loss_is_skipped_and_repeated_failures_roll_back(name, arch):
    cfg = model_settings(name, arch=arch, hidden=8, latent=4, horizon=H, device="cpu",
                      max_bad_steps=3, max_steps_per_batch=1)
    lr = OnlineLearner(cfg, C, W)
    rng = np.random.default_rng(1)
    for _ in range(3):
        lr.learn(_spans(16, rng))
    # Non-finite input never reaches the optimizer or the replay buffer.
    bad = _spans(16, rng)
    bad[0, 0, 0] = np.nan
    lr.learn(bad)
    assert np.isfinite(lr.replay[: lr.replay_n]).all()
    # Corrupted weights make every loss non-finite: steps are skipped, then rolled back.
    snapshot = {k: v.clone() for k, v in lr._good["model"].items()}
    with torch.no_grad():
        next(lr.model.parameters()).fill_(float("nan"))
    step = lr.step
    for _i in range(3):
        stats = lr.learn(_spans(16, rng))
        assert stats["skipped"] == 1 and lr.step == step
    assert stats["rolled_back"] == 1 and lr.rollbacks_total == 1
    for k, v in lr.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k  # back to the last good weights
    assert np.isfinite(lr.score(_spans(4, rng)[:, :W]).point_score).all()
    assert lr.learn(_spans(16, rng))["skipped"] == 0


@pytest.mark.parametrize("device", DEVICES)
def test_scoring_in_chunks_matches_one_pass(name, device):
    """A batch larger than score_chunk is scored in several passes with the same result
    (the RVAE draws its samples per pass, so only its forecast's shape is compared)."""
    cfg = model_settings(name, hidden=8, latent=4, horizon=H, device=device)
    lr = OnlineLearner(cfg, C, W)
    x = _spans(50, np.random.default_rng(2))[:, :W]
    whole = lr.score(x)
    lr.score_chunk = 7
    parts = lr.score(x)
    assert parts.point_score.shape == (50, W) and parts.forecast.shape == (50, H, C)
    assert np.isfinite(parts.point_score).all()
    if name == "sota":
        np.testing.assert_allclose(parts.point_score, whole.point_score, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(parts.forecast, whole.forecast, rtol=1e-4, atol=1e-6)
    else:
        assert parts.forecast_std is not None and parts.forecast_std.shape == (50, H, C)
    assert lr.score(x[:0]).point_score.shape == (0, W)
    if device == "cuda":  # inputs and results went through the reusable pinned buffers
        assert lr._stage.is_pinned() and lr._out_host.is_pinned()


def test_learning_off_and_replay_only_steps(name):
    rng = np.random.default_rng(3)
    off = OnlineLearner(model_settings(name, hidden=8, latent=4, horizon=H, device="cpu",
                                    max_steps_per_batch=0), C, W)
    assert np.isnan(off.learn(_spans(8, rng))["loss"]) and off.step == 0
    lr = OnlineLearner(model_settings(name, hidden=8, latent=4, horizon=H, device="cpu"), C, W)
    lr.learn(_spans(8, rng))
    stats = lr.learn(np.zeros((0, W + H, C), np.float32))  # replay alone still trains
    assert lr.step == 2 and np.isfinite(stats["loss"])
