"""RVAE: a variational window autoencoder with a Gaussian likelihood and a forecasting head.

encoder over the window (GRU, or MLP with ``arch="mlp"``) → ``(mu, log sigma^2)`` →
reparameterized ``z`` → decoder (GRU fed ``z`` at every step, or MLP) emitting a mean and a
learned log-variance for every point of the window and of the ``horizon`` points after it;
the continuation's mean adds a linear autoregression of the window. Scoring encodes a
robust copy of the window a second time and the forecast head reads it, as in SOTA
(``robust_limit``). Loss: the negative ELBO, with the KL term annealed linearly from 0 to
``kl_weight`` over ``kl_anneal_steps`` steps and free bits
(each latent dimension's KL counts at least ``free_bits`` nats, so the posterior cannot
collapse onto the prior). Per-point score: Gaussian negative log-likelihood (shifted to be
non-negative) averaged over ``n_samples`` draws of ``z`` — the reconstruction probability.
The continuation's spread is the standard deviation of the mixture over those draws.
(:mod:`streamgen.models.layers` compares the recurrent and the MLP networks.)

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> m = RVAE(RVAEConfig(n_channels=1, window=10, hidden=8, latent=4, horizon=2))
>>> out, loss = m(torch.randn(3, 10, 1), torch.randn(3, 2, 1), step=10)
>>> tuple(out.forecast_std.shape), bool(torch.isfinite(loss))
((3, 2, 1), True)
>>> bool((m.score(torch.randn(3, 10, 1)).point_score >= 0).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from streamgen.models.base import OnlineModel, SeqModelConfig, SeqOutput
from streamgen.models.kl import annealed_weight, free_bits_kl, gaussian_kl
from streamgen.models.layers import LinearForecast, make_decoder, make_encoder, robust_input
from streamgen.models.settings import ModelConfig

# Log-variance bounds keep the likelihood finite: sigma in [e^-3.5, e^3] in normalized units.
_LOGVAR_MIN, _LOGVAR_MAX = -7.0, 6.0


@dataclass(frozen=True)
class RVAEConfig(SeqModelConfig):
    kl_weight: float = 1.0
    kl_anneal_steps: int = 500
    free_bits: float = 0.1
    n_samples: int = 4


class RVAESettings(ModelConfig):
    """``model.name: rvae``: the shared settings plus the ELBO's: the KL term's weight, its
    warm-up over the first training steps (linear from 0), free bits per latent dimension,
    and the number of latent draws averaged when scoring."""

    name: Literal["rvae"] = "rvae"
    kl_weight: float = Field(default=1.0, ge=0.0)
    kl_anneal_steps: int = Field(default=500, ge=0)
    free_bits: float = Field(default=0.1, ge=0.0)
    n_samples: int = Field(default=4, ge=1, le=64)


def gaussian_energy(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL minus its lowest possible value, so it is >= 0 (same ordering as NLL)."""
    return 0.5 * ((x - mean).pow(2) * torch.exp(-logvar) + logvar - _LOGVAR_MIN)


class RVAE(OnlineModel):
    def __init__(self, cfg: RVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.horizon = cfg.horizon
        C, W, H = cfg.n_channels, cfg.window, cfg.horizon
        self.encoder = make_encoder(cfg.arch, C, W, cfg.hidden, cfg.layers, cfg.dropout)
        self.to_stats = nn.Linear(cfg.hidden, 2 * cfg.latent)
        self.decoder = make_decoder(
            cfg.arch, C, W, H, cfg.latent, cfg.hidden, cfg.layers, 2, cfg.dropout
        )
        self.linear = LinearForecast(W, H)

    def _decode(self, x: torch.Tensor, z: torch.Tensor):
        W = x.shape[1]
        out = self.decoder(z)  # (B, W + H, C, 2)
        mean, logvar = out[..., 0], out[..., 1].clamp(_LOGVAR_MIN, _LOGVAR_MAX)
        r_mu, r_lv = mean[:, :W], logvar[:, :W]
        x_in = robust_input(x, r_mu, self.cfg.robust_limit) if self.cfg.robust_limit else x
        c_mu = mean[:, W:] + self.linear(x_in)
        return r_mu, r_lv, c_mu, logvar[:, W:]

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, future: torch.Tensor | None = None, step: int = 0
    ) -> tuple[SeqOutput, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=-1)  # (B, L) each
        lim = self.cfg.robust_limit
        if lim and not self.training:
            # Scoring: encode again with every point pulled to within lim of the mean
            # reconstruction, so that an outlier spoils its own reconstruction but not
            # its neighbours' (as in SOTA).
            r1 = self.decoder(mu)[:, : x.shape[1], :, 0]
            mu, logvar = self.to_stats(self.encoder(robust_input(x, r1, lim))).chunk(2, dim=-1)
        logvar = logvar.clamp(-10.0, 10.0)
        kl_dim = gaussian_kl(mu, logvar).mean(0)  # (L,)
        kl = kl_dim.sum()
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            r_mu, r_lv, c_mu, c_lv = self._decode(x, z)
            energy = gaussian_energy(x, r_mu, r_lv)  # (B, W, C)
        else:
            # Reconstruction probability: average the likelihood over n_samples draws of z.
            n, B = self.cfg.n_samples, x.shape[0]
            # A fixed generator makes scoring deterministic: the same window under the same
            # weights always gets the same score (reproducible runs, checkpoint round trips).
            gen = torch.Generator(device=x.device).manual_seed(0)
            eps = torch.randn(n * B, mu.shape[1], device=x.device, generator=gen)
            zs = mu.repeat(n, 1) + eps * torch.exp(0.5 * logvar).repeat(n, 1)
            xs = x.repeat(n, 1, 1)
            r_mu, r_lv, c_mu, c_lv = self._decode(xs, zs)
            energy = gaussian_energy(xs, r_mu, r_lv).view(n, *x.shape).mean(0)
            r_mu = r_mu.view(n, *x.shape).mean(0)
            c_mu, c_lv = c_mu.view(n, B, *c_mu.shape[1:]), c_lv.view(n, B, *c_lv.shape[1:])
            # Mixture moments over samples: mean of means, total variance.
            c_var = c_lv.exp().mean(0) + c_mu.var(0, unbiased=False)
            c_mu = c_mu.mean(0)
            c_lv = torch.log(c_var)
        loss = energy.mean()
        if future is not None:
            loss = loss + gaussian_energy(future, c_mu, c_lv).mean()
        beta = annealed_weight(step, self.cfg.kl_weight, self.cfg.kl_anneal_steps)
        free = free_bits_kl(kl_dim, self.cfg.free_bits)
        # KL is per window; spread it over the window's points like the likelihood terms.
        loss = loss + beta * free / (x.shape[1] * x.shape[2])
        out = SeqOutput(
            recon=r_mu, forecast=c_mu, point_score=energy.mean(-1),
            forecast_std=torch.exp(0.5 * c_lv), kl=kl.detach(),
        )
        return out, loss


def build(cfg: RVAESettings, n_channels: int, window: int) -> RVAE:
    """The network for the pipeline's ``model`` section (the registry's entry point)."""
    return RVAE(RVAEConfig(
        **cfg.network_args(n_channels, window), kl_weight=cfg.kl_weight,
        kl_anneal_steps=cfg.kl_anneal_steps, free_bits=cfg.free_bits, n_samples=cfg.n_samples,
    ))


SETTINGS = RVAESettings

__all__ = ["RVAE", "RVAEConfig", "RVAESettings", "SETTINGS", "build", "gaussian_energy"]
