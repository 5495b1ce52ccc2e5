"""SOTA: a streaming autoencoder with a recurrent (GRU) decoder that also continues the window.

encoder GRU → latent ``z`` (bottleneck, ``tanh``) → GRU decoder that reconstructs the window
(teacher-forced, conditioned on ``z``) and continues it ``horizon`` steps ahead. Trained with
mean squared error on the reconstruction and, when the future is known, on the continuation.
Per-point score: squared reconstruction error averaged over channels.

Examples
--------
>>> import torch
>>> m = SOTA(SOTAConfig(n_channels=2, hidden=8, latent=4, horizon=3))
>>> out, loss = m(torch.randn(5, 16, 2), torch.randn(5, 3, 2))
>>> tuple(out.recon.shape), tuple(out.forecast.shape), tuple(out.point_score.shape)
((5, 16, 2), (5, 3, 2), (5, 16))
>>> bool(loss > 0)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from streamgen.models.base import OnlineModel, SeqOutput
from streamgen.models.layers import GRUEncoder, TeacherForcedDecoder


@dataclass(frozen=True)
class SOTAConfig:
    n_channels: int
    hidden: int = 64
    latent: int = 16
    layers: int = 1
    dropout: float = 0.0
    horizon: int = 8
    # Weight of the continuation loss relative to reconstruction.
    forecast_weight: float = 1.0


class SOTA(OnlineModel):
    def __init__(self, cfg: SOTAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.horizon = cfg.horizon
        self.encoder = GRUEncoder(cfg.n_channels, cfg.hidden, cfg.layers, cfg.dropout)
        self.to_latent = nn.Linear(cfg.hidden, cfg.latent)
        self.decoder = TeacherForcedDecoder(
            cfg.n_channels, cfg.latent, cfg.hidden, cfg.layers, cfg.dropout, n_params=1
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, future: torch.Tensor | None = None, step: int = 0
    ) -> tuple[SeqOutput, torch.Tensor]:
        z = torch.tanh(self.to_latent(self.encoder(x)))  # (B, L)
        recon, cont = self.decoder(x, z, self.horizon)
        recon, cont = recon[..., 0], cont[..., 0]  # (B, W, C), (B, H, C)
        err = (recon - x).pow(2)  # (B, W, C)
        loss = err.mean()
        if future is not None:
            loss = loss + self.cfg.forecast_weight * (cont - future).pow(2).mean()
        return SeqOutput(recon=recon, forecast=cont, point_score=err.mean(-1)), loss
