"""The interface every online model implements, and the output it returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SeqModelConfig:
    """Fields every online sequence model shares; each model's config adds its own."""

    n_channels: int
    window: int = 32
    hidden: int = 64
    latent: int = 16
    layers: int = 1
    dropout: float = 0.0
    horizon: int = 8
    # Scoring re-encodes, and the forecast head reads, each point within this many
    # (normalized) units of its reconstruction; 0 uses the raw window throughout.
    robust_limit: float = 1.5
    # "gru": GRU encoder and recurrent GRU decoder; "mlp": window MLPs (faster on CPU).
    arch: str = "mlp"


@dataclass
class SeqOutput:
    """What a forward pass returns (all in normalized units).

    ``point_score`` is a non-negative per-point anomaly energy ``(B, W)``: squared error for the
    autoencoder, Gaussian negative log-likelihood plus a constant for the VAE.
    """

    recon: torch.Tensor  # (B, W, C)
    forecast: torch.Tensor  # (B, H, C) continuation of the window
    point_score: torch.Tensor  # (B, W)
    forecast_std: torch.Tensor | None = None  # (B, H, C), VAE only
    kl: torch.Tensor | None = None  # scalar, VAE only


class OnlineModel(nn.Module):
    """Base class: ``forward(x, future, step) -> (SeqOutput, loss)``; ``loss`` is always a
    scalar tensor: the reconstruction term (with the RVAE's KL), plus the forecast term when
    ``future`` is given (without it both models train on reconstruction alone)."""

    horizon: int

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, future: torch.Tensor | None = None, step: int = 0
    ) -> tuple[SeqOutput, torch.Tensor]:
        raise NotImplementedError

    def loss_with_grads(
        self, x: torch.Tensor, future: torch.Tensor, step: int = 0
    ) -> torch.Tensor | None:
        """The training loss of ``forward(x, future, step)`` with every parameter's gradient
        already set (not accumulated), for models that compute both without autograd;
        None (the default) where the learner must run ``forward`` and ``backward``."""
        return None

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> SeqOutput:
        """Score windows ``(B, W, C)`` without training; deterministic where possible."""
        was_training = self.training
        self.eval()
        out, _ = self.forward(x)
        self.train(was_training)
        return out

    @torch.no_grad()
    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """Continue windows ``(B, W, C)`` by ``horizon`` steps: ``(B, H, C)``."""
        return self.score(x).forecast
