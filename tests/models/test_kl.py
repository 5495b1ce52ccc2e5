"""The KL term shared by the VAE and the RVAE (streamgen/models/kl.py)."""

from __future__ import annotations

import pytest
import torch

from streamgen.models.kl import annealed_weight, free_bits_kl, gaussian_kl
from streamgen.models.rvae import RVAE, RVAEConfig


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p),
                          atol=1e-5)


def test_annealing_is_linear_and_off_without_anneal_steps():
    assert [annealed_weight(s, 2.0, 4) for s in (0, 1, 4, 9)] == [0.0, 0.5, 2.0, 2.0]
    assert annealed_weight(0, 2.0, 0) == 2.0  # no warm-up: the full weight from the first step


def test_free_bits_floor_each_dimension():
    kl = torch.tensor([0.0, 0.05, 0.3])
    assert float(free_bits_kl(kl, 0.1)) == pytest.approx(0.5)
    assert float(free_bits_kl(kl, 0.0)) == pytest.approx(0.35)


def test_rvae_without_annealing_weighs_the_kl_from_the_first_step():
    cfg = dict(n_channels=1, window=8, hidden=8, latent=4, horizon=2, free_bits=0.0)
    x, fut = torch.randn(3, 8, 1), torch.randn(3, 2, 1)
    losses = []
    for anneal in (0, 10**9):  # none, and so long that step 0 weighs the KL 0
        torch.manual_seed(0)
        m = RVAE(RVAEConfig(**cfg, kl_anneal_steps=anneal))
        torch.manual_seed(1)
        out, loss = m(x, fut, step=0)
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(losses[1] + float(out.kl) / 8)
