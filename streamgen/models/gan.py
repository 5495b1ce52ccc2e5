"""Batch recurrent WGAN-GP over windows, with an encoder for anomaly scoring.

**Objective: WGAN-GP** (Gulrajani et al. 2017), not minimax. Why: (1) the critic's estimate
of the Wasserstein distance is a loss that goes *down* as samples improve, which makes
training observable and early stopping possible, where minimax losses oscillate with no
relation to quality; (2) its gradients do not vanish when the critic wins, and in practice it
mode-collapses far less than minimax GANs on small recurrent models, which need a stack of
stabilizers (label smoothing, instance noise, spectral norm, feature matching) to behave.
The price is ``n_critic`` critic steps per generator step and a double backward for the
penalty (cuDNN RNNs lack double backward, so the penalty pass runs with cuDNN off).

**Networks.** The generator reads a global noise vector ``z`` (sets its initial state and is
fed at every step, for sequence-level modes such as frequency and phase) and per-step noise
``e_t`` (local variation) through a GRU. The critic is a GRU whose per-step outputs are
averaged into one score per window; no batch norm (it breaks the per-sample penalty).

**Anomaly score (f-AnoGAN "izi_f", Schlegl et al. 2019, adapted to sequences).** An encoder
``E`` maps a window to ``(z, e)`` and is trained, with the generator held fixed, so that
``G(E(x))`` reproduces ``x`` in data space and in the critic's feature space. Per point the
score is ``|x_t - x̂_t|² + κ |φ_t(x) - φ_t(x̂)|²`` (``φ_t``: critic GRU state), and each
window adds ``critic_weight * softplus(z)`` where ``z`` standardizes ``-D(x)`` by the critic's
mean/std on training windows (stored by :meth:`GAN.fit_score_stats`). History the generator
cannot reproduce, or that the critic finds unrealistic, scores high.

**Mode collapse** is watched with :func:`diversity_ratio`: the mean pairwise distance of
generated windows over that of real windows (≈ 1 healthy, → 0 collapsed).

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> g = GAN(GANConfig(n_channels=2, hidden=8, latent=4, noise_dim=2))
>>> x = torch.randn(4, 6, 2)
>>> bool(torch.isfinite(g.critic_loss(x)[0])), g.sample(3, 6).shape
(True, torch.Size([3, 6, 2]))
>>> window, point = g.score(x)
>>> window.shape, point.shape
(torch.Size([4]), torch.Size([4, 6]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GANConfig:
    """Shape-defining and loss arguments; saved as ``model_args`` in checkpoints."""

    n_channels: int = 1
    hidden: int = 64
    latent: int = 16  # global noise z
    noise_dim: int = 4  # per-step noise e_t
    layers: int = 2
    gp_weight: float = 10.0
    # Share of each batch (its first windows) the gradient penalty is computed on. The
    # penalty's double backward through the GRU costs more than the critic's own passes on
    # CPU; an unbiased estimate on a quarter of the batch is what ``backfill`` uses.
    gp_fraction: float = 1.0
    n_critic: int = 5
    # Drift penalty keeps critic outputs near 0 (Karras et al. 2018) so its scale is stable.
    drift_weight: float = 1e-3
    feature_weight: float = 1.0  # κ of izi_f
    critic_weight: float = 0.5  # weight of the standardized critic term in the score


# Weight of the N(0, I) penalty in imputation's latent search: small, because the squared
# error on observed z-unit values is the evidence, the prior only breaks ties in long gaps.
_PRIOR_WEIGHT = 0.01


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.to_h0 = nn.Linear(cfg.latent, cfg.hidden * cfg.layers)
        self.rnn = nn.GRU(cfg.latent + cfg.noise_dim, cfg.hidden, cfg.layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, cfg.n_channels)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``z`` ``(B, L)``, ``e`` ``(B, T, N)`` → windows ``(B, T, C)``."""
        b, t = e.shape[:2]
        h0 = torch.tanh(self.to_h0(z)).view(b, self.cfg.layers, -1).transpose(0, 1)
        inp = torch.cat([z.unsqueeze(1).expand(b, t, z.shape[1]), e], dim=-1)
        out, _ = self.rnn(inp, h0.contiguous())
        return self.out(out)


class Critic(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.rnn = nn.GRU(cfg.n_channels, cfg.hidden, cfg.layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score per window ``(B,)`` and per-step features ``(B, T, H)``."""
        feats, _ = self.rnn(x)
        return self.out(feats).squeeze(-1).mean(-1), feats


class Encoder(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.rnn = nn.GRU(cfg.n_channels, cfg.hidden, 1, batch_first=True, bidirectional=True)
        self.to_z = nn.Linear(2 * cfg.hidden, cfg.latent)
        self.to_e = nn.Linear(2 * cfg.hidden, cfg.noise_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, T, C)`` → ``z`` ``(B, L)`` and ``e`` ``(B, T, N)``."""
        out, _ = self.rnn(x)  # (B, T, 2H)
        return self.to_z(out.mean(1)), self.to_e(out)


class GAN(nn.Module):
    """Generator, critic and encoder; losses live here, optimizer steps in the trainer."""

    critic_mean: torch.Tensor
    critic_std: torch.Tensor

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.critic = Critic(config)
        self.encoder = Encoder(config)
        # Critic statistics on training windows, used to standardize the critic term.
        self.register_buffer("critic_mean", torch.zeros(()))
        self.register_buffer("critic_std", torch.ones(()))

    def _device(self) -> torch.device:
        return self.generator.out.weight.device

    def noise(
        self, n: int, length: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard normal ``z`` ``(n, L)`` and ``e`` ``(n, T, N)`` on the model's device."""
        cfg, dev = self.config, self._device()
        z = torch.randn(n, cfg.latent, generator=generator)
        e = torch.randn(n, length, cfg.noise_dim, generator=generator)
        return z.to(dev), e.to(dev)

    # -- losses ------------------------------------------------------------------------
    def critic_loss(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """WGAN-GP critic loss and the Wasserstein estimate ``E[D(real)] - E[D(fake)]``."""
        with torch.no_grad():
            fake = self.generator(*self.noise(real.shape[0], real.shape[1]))
        d_real, _ = self.critic(real)
        d_fake, _ = self.critic(fake)
        m = max(1, min(real.shape[0], math.ceil(real.shape[0] * self.config.gp_fraction)))
        alpha = torch.rand(m, 1, 1, device=real.device)
        mix = (alpha * real[:m] + (1.0 - alpha) * fake[:m]).requires_grad_(True)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN GRU has no double backward
            d_mix, _ = self.critic(mix)
            (grad,) = torch.autograd.grad(d_mix.sum(), mix, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
        wdist = d_real.mean() - d_fake.mean()
        drift = (d_real**2).mean()
        loss = -wdist + self.config.gp_weight * gp + self.config.drift_weight * drift
        return loss, wdist.detach()

    def generator_loss(self, n: int, length: int) -> torch.Tensor:
        """``-E[D(G(z, e))]``; only the generator's optimizer should step on it."""
        d_fake, _ = self.critic(self.generator(*self.noise(n, length)))
        return -d_fake.mean()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``G(E(x))``: the generator's closest reproduction of ``x`` ``(B, T, C)``."""
        z, e = self.encoder(x)
        return self.generator(z, e)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """izi_f encoder loss: ``(reconstruction, loss)``; only the encoder should step on it."""
        x_hat = self.reconstruct(x)
        _, f_real = self.critic(x)
        _, f_hat = self.critic(x_hat)
        loss = F.mse_loss(x_hat, x) + self.config.feature_weight * F.mse_loss(
            f_hat, f_real.detach()
        )
        return x_hat, loss

    # -- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` windows ``(n, length, C)`` from the generator."""
        return self.generator(*self.noise(n, length, generator))

    @torch.no_grad()
    def impute(
        self, x: torch.Tensor, mask: torch.Tensor, n_iter: int = 10, refine_steps: int = 100
    ) -> torch.Tensor:
        """Fill unobserved points of ``x`` ``(B, T, C)``; ``mask`` is True where observed.

        Conditional generation by latent search (as AnoGAN searches for its anomaly score):

        1. projection: iterate ``fill ← G(E(fill))`` on the missing values only, ``n_iter``
           times, so the encoder sees a window without holes;
        2. refinement: from ``(z, e) = E(fill)``, ``refine_steps`` Adam steps on the global
           ``z`` minimize the squared error on the *observed* values plus a weak ``N(0, I)``
           penalty; the missing values are ``G(z, e)`` there. The per-step noise ``e`` stays
           at the encoder's answer: searching it too lets the generator fit the observed
           points one by one and leave the missing ones anywhere.

        Observed values are returned unchanged; weights are not touched.
        """
        mask = mask.bool()
        observed = torch.where(mask, torch.nan_to_num(x), torch.zeros_like(x))
        filled = observed
        for _ in range(n_iter):
            filled = torch.where(mask, observed, self.reconstruct(filled))
        if refine_steps <= 0:
            return filled
        z, e = self.encoder(filled)
        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        weight = mask.to(x.dtype)
        with torch.enable_grad():
            for _ in range(refine_steps):
                resid = ((self.generator(z, e) - observed) ** 2 * weight).sum()
                (z.grad,) = torch.autograd.grad(resid + _PRIOR_WEIGHT * 0.5 * (z**2).sum(), z)
                opt.step()
        return torch.where(mask, observed, self.generator(z.detach(), e))

    @torch.no_grad()
    def fit_score_stats(self, x: torch.Tensor, batch_size: int = 1024) -> None:
        """Store mean/std of the critic output on (training) windows ``x``."""
        d = torch.cat([self.critic(b)[0] for b in x.split(batch_size)])
        self.critic_mean.copy_(d.mean())
        self.critic_std.copy_(d.std().clamp(min=1e-6) if len(d) > 1 else torch.ones(()))

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly scores: per-window ``(B,)`` and per-point ``(B, T)`` (module docstring)."""
        x_hat = self.reconstruct(x)
        d, f_real = self.critic(x)
        _, f_hat = self.critic(x_hat)
        resid = ((x - x_hat) ** 2).sum(-1)  # (B, T)
        feat = ((f_real - f_hat) ** 2).mean(-1)  # (B, T)
        z = (self.critic_mean - d) / self.critic_std  # (B,) high = less realistic
        point = resid + self.config.feature_weight * feat
        point = point + self.config.critic_weight * F.softplus(z).unsqueeze(-1)
        return point.mean(-1), point


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean pairwise L2 distance of ``fake`` windows over that of ``real`` windows.

    Near 1 when the generator spreads like the data; a fall towards 0 flags mode collapse.

    >>> x = torch.randn(64, 8, 2)
    >>> round(diversity_ratio(x, x), 3), diversity_ratio(x[:1].expand(64, 8, 2), x) < 0.01
    (1.0, True)
    """

    def spread(a: torch.Tensor) -> torch.Tensor:
        flat = a.detach().flatten(1).float()
        n = flat.shape[0]
        return torch.cdist(flat, flat).sum() / max(n * (n - 1), 1)

    ref = spread(real)
    return float(spread(fake) / ref.clamp(min=1e-12))
