"""SOTA: a streaming window autoencoder with a forecasting head.

encoder over the window (a GRU, or an MLP with ``arch="mlp"``) → latent ``z`` (bottleneck,
``tanh``) → decoder (a GRU fed ``z`` at every step, or an MLP) that reconstructs the window
*from z alone* and proposes its continuation ``horizon`` steps ahead;
the continuation adds a linear autoregression of the window (:class:`LinearForecast`).
Trained with mean squared error on the reconstruction and, when the future is known, on the
continuation. Per-point score: squared reconstruction error averaged over channels.

When scoring, the window is encoded a second time with each point pulled to within
``robust_limit`` of the first reconstruction (:func:`robust_input`), and the forecast head
reads that robust window too: an outlier then inflates its own error but neither its
neighbours' reconstruction nor the forecasts after it.

The decoder is not teacher-forced: a decoder that sees ``x[t-1]`` while rebuilding ``x[t]``
learns to copy, and then a level shift, a drift or a stuck sensor rebuilds as well as normal
data. From the bottleneck alone only windows shaped like normal ones rebuild well.

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> m = SOTA(SOTAConfig(n_channels=2, window=16, hidden=8, latent=4, horizon=3))
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

from streamgen.models.base import OnlineModel, SeqModelConfig, SeqOutput
from streamgen.models.layers import LinearForecast, make_decoder, make_encoder, robust_input


@dataclass(frozen=True)
class SOTAConfig(SeqModelConfig):
    # Weight of the continuation loss relative to reconstruction.
    forecast_weight: float = 1.0


class SOTA(OnlineModel):
    def __init__(self, cfg: SOTAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.horizon = cfg.horizon
        C, W, H = cfg.n_channels, cfg.window, cfg.horizon
        self.encoder = make_encoder(cfg.arch, C, W, cfg.hidden, cfg.layers, cfg.dropout)
        self.to_latent = nn.Linear(cfg.hidden, cfg.latent)
        self.decoder = make_decoder(
            cfg.arch, C, W, H, cfg.latent, cfg.hidden, cfg.layers, 1, cfg.dropout
        )
        self.linear = LinearForecast(W, H)

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.tanh(self.to_latent(self.encoder(x)))  # (B, L)
        return self.decoder(z)[..., 0]  # (B, W + H, C)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, future: torch.Tensor | None = None, step: int = 0
    ) -> tuple[SeqOutput, torch.Tensor]:
        W = x.shape[1]
        lim = self.cfg.robust_limit
        out = self._decode(x)  # (B, W + H, C)
        if lim and not self.training:
            # Scoring: encode again with every point pulled to within lim of the first
            # reconstruction, so that an outlier spoils its own reconstruction but not
            # its neighbours' (which would score the points after a spike as anomalous).
            out = self._decode(robust_input(x, out[:, :W], lim))
        recon = out[:, :W]
        x_in = robust_input(x, recon, lim) if lim else x
        cont = out[:, W:] + self.linear(x_in)  # (B, H, C)
        err = (recon - x).pow(2)  # (B, W, C)
        loss = err.mean()
        if future is not None:
            loss = loss + self.cfg.forecast_weight * (cont - future).pow(2).mean()
        return SeqOutput(recon=recon, forecast=cont, point_score=err.mean(-1)), loss
