"""Batch VAE and GAN: shapes, finite losses, sampling, scoring, imputation contract."""

from __future__ import annotations

import pytest
import torch

from streamgen.models.gan import GAN, GANConfig, diversity_ratio
from streamgen.models.vae import VAE, VAEConfig


def _vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(n_channels=3, hidden=8, latent=4, kl_anneal_steps=10))


def _gan() -> GAN:
    torch.manual_seed(0)
    return GAN(GANConfig(n_channels=3, hidden=8, latent=4, noise_dim=2))


def test_vae_forward_shapes_and_finite_loss():
    m = _vae()
    x = torch.randn(5, 12, 3)
    out, loss = m(x)
    assert out.mean.shape == out.logvar.shape == (5, 12, 3)
    assert out.z_mu.shape == (5, 4)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_vae_kl_annealing_advances_with_training_steps():
    m = _vae()
    assert m.kl_beta() == 0.0
    for _ in range(5):
        m(torch.randn(2, 6, 3))
    assert m.kl_beta() == pytest.approx(0.5)
    m.eval()
    m(torch.randn(2, 6, 3))
    assert int(m.steps) == 5  # evaluation forwards do not advance the schedule


def test_vae_score_sample_and_any_length():
    m = _vae().eval()
    window, point = m.score(torch.randn(4, 7, 3))
    assert window.shape == (4,) and point.shape == (4, 7)
    assert torch.isfinite(window).all() and torch.isfinite(point).all()
    assert m.sample(6, 9).shape == (6, 9, 3)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(m.sample(2, 5, generator=g1), m.sample(2, 5, generator=g2))


@pytest.mark.parametrize("make", [_vae, _gan])
def test_impute_keeps_observed_values_and_fills_missing(make):
    m = make().eval()
    x = torch.randn(3, 10, 3)
    mask = torch.rand(3, 10, 3) > 0.3
    holes = torch.where(mask, x, torch.full_like(x, float("nan")))
    filled = m.impute(holes, mask)
    assert torch.isfinite(filled).all()
    assert torch.equal(filled[mask], x[mask])


def test_gan_losses_finite_and_backward():
    m = _gan()
    x = torch.randn(4, 8, 3)
    d_loss, wdist = m.critic_loss(x)
    d_loss.backward()
    assert torch.isfinite(d_loss) and torch.isfinite(wdist)
    assert all(p.grad is not None for p in m.critic.parameters())
    g_loss = m.generator_loss(4, 8)
    recon, e_loss = m(x)
    assert torch.isfinite(g_loss) and torch.isfinite(e_loss)
    assert recon.shape == x.shape


def test_gan_score_and_sample_shapes():
    m = _gan().eval()
    m.fit_score_stats(torch.randn(16, 8, 3))
    window, point = m.score(torch.randn(4, 8, 3))
    assert window.shape == (4,) and point.shape == (4, 8)
    assert torch.isfinite(point).all() and (point >= 0).all()
    assert m.sample(5, 11).shape == (5, 11, 3)


def test_diversity_ratio_flags_collapse():
    real = torch.randn(32, 8, 3)
    assert diversity_ratio(real, real) == pytest.approx(1.0)
    assert diversity_ratio(real[:1].repeat(32, 1, 1), real) < 1e-6


def test_vae_residual_bank_and_sampling():
    m = _vae().eval()
    x = torch.randn(40, 9, 3)
    bank = m.residual_bank(x)
    assert torch.equal(bank.source, torch.arange(40))
    rec = m.decode(m.encode(x)[0], 9)[0]
    assert torch.allclose(rec + bank.residuals, x, atol=1e-6)  # mean + residual = the window
    small = m.residual_bank(x, max_windows=10)
    assert len(small.source) == 10 and torch.all(small.source[1:] > small.source[:-1])
    assert torch.allclose(small.residuals, bank.residuals[small.source], atol=1e-6)
    # a sample is the plain sample (same latent) plus the residual of the window it names
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s, src = m.sample_with_residuals(200, bank, generator=g1)
    plain = m.sample(200, 9, generator=g2)
    assert s.shape == (200, 9, 3) and src.shape == (200,)
    assert torch.allclose(s - plain, bank.residuals[src], atol=1e-6)
    assert len(torch.unique(src)) > 30  # drawn across the bank, not one window
    with pytest.raises(ValueError, match="empty"):
        m.sample_with_residuals(2, m.residual_bank(x[:0]))
