"""Hand-written gradients (models/fastgrad.py): the loss and gradients of autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamgen.models.online import OnlineLearner
from streamgen.models.registry import model_settings
from streamgen.models.sota import SOTA, SOTAConfig


def _autograd(m: SOTA, x: torch.Tensor, future: torch.Tensor):
    for p in m.parameters():
        p.grad = None
    _, loss = m(x, future)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in m.parameters()]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("limit", [1.5, 0.0])
@pytest.mark.parametrize("batch", [64, 5])
def test_loss_and_gradients_match_autograd(channels, layers, limit, batch):
    torch.manual_seed(channels + 10 * layers)
    m = SOTA(SOTAConfig(n_channels=channels, window=16, hidden=32, latent=8, horizon=4,
                        layers=layers, robust_limit=limit, arch="mlp", forecast_weight=0.7))
    m.train()
    span = 2 * torch.randn(batch, 20, channels)
    x, future = span[:, :16], span[:, 16:]  # views, as the learner passes them
    ref_loss, ref_grads = _autograd(m, x, future)
    for p in m.parameters():
        p.grad = torch.full_like(p, 7.0)  # set, not accumulated into
    loss = m.loss_with_grads(x, future)
    assert loss is not None
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
    for ref, p in zip(ref_grads, m.parameters(), strict=True):
        torch.testing.assert_close(p.grad, ref, rtol=1e-5, atol=1e-7)


def test_recurrent_or_dropout_networks_use_autograd():
    base = dict(n_channels=1, window=8, hidden=8, latent=4, horizon=2)
    x, future = torch.randn(3, 8, 1), torch.randn(3, 2, 1)
    assert SOTA(SOTAConfig(**base, arch="gru")).loss_with_grads(x, future) is None
    assert SOTA(SOTAConfig(**base, arch="mlp", dropout=0.1)).loss_with_grads(x, future) is None


def test_learner_trains_by_hand_as_with_autograd():
    cfg = model_settings("sota", arch="mlp", hidden=16, latent=4, horizon=4, device="cpu", train_batch=16)
    by_hand, auto = OnlineLearner(cfg, 2, 12), OnlineLearner(cfg, 2, 12)
    auto.model.loss_with_grads = lambda *a, **k: None  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    for _ in range(20):
        spans = rng.normal(size=(40, 16, 2)).astype(np.float32)
        a, b = by_hand.learn(spans), auto.learn(spans)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert by_hand.step == auto.step == 100  # 5 steps of 8 new spans per call
    for p, q in zip(by_hand.model.parameters(), auto.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
