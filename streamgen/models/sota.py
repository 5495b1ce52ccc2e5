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
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from streamgen.models.base import OnlineModel, SeqModelConfig, SeqOutput
from streamgen.models.fastgrad import TANH, LinearChain, grad_of
from streamgen.models.layers import (
    LinearForecast,
    WindowDecoder,
    WindowEncoder,
    make_decoder,
    make_encoder,
    robust_input,
)
from streamgen.models.settings import ModelConfig


class SOTASettings(ModelConfig):
    """``model.name: sota``: the shared settings only."""

    name: Literal["sota"] = "sota"


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
        self._chain = self._linear_chain()
        self._weights: dict[tuple[int, torch.device], torch.Tensor] = {}

    def _linear_chain(self) -> LinearChain | None:
        """Encoder, bottleneck and decoder as one :class:`LinearChain` (the MLPs without
        dropout), for :meth:`loss_with_grads`; None for the GRUs."""
        enc, dec = self.encoder, self.decoder
        if not (isinstance(enc, WindowEncoder) and isinstance(dec, WindowDecoder)):
            return None
        chain = LinearChain.of([*enc.net, enc.act, self.to_latent, TANH, *dec.net])
        if chain is None:
            return None
        covered = {id(p) for p in [*chain.parameters(), *self.linear.parameters()]}
        return chain if covered == {id(p) for p in self.parameters()} else None

    def _loss_weights(self, like: torch.Tensor) -> torch.Tensor:
        """Per decoder output (``(W + H) * C`` of them), the loss's derivative by the output
        divided by the output's error: ``2 / n`` for each of the reconstruction's ``n``
        errors, ``2 * forecast_weight / m`` for the continuation's ``m`` (cached per batch
        size and device)."""
        B = like.shape[0]
        key = (B, like.device)
        w = self._weights.get(key)
        if w is None:
            C, W, H = self.cfg.n_channels, self.cfg.window, self.horizon
            w = torch.cat([
                torch.full((W * C,), 2.0 / (B * W * C)),
                torch.full((H * C,), 2.0 * self.cfg.forecast_weight / (B * H * C)),
            ]).to(like)
            self._weights[key] = w
        return w

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

    @torch.no_grad()
    def loss_with_grads(
        self, x: torch.Tensor, future: torch.Tensor, step: int = 0
    ) -> torch.Tensor | None:
        """The training loss of :meth:`forward`, with every parameter's gradient *set* by
        hand (:mod:`~streamgen.models.fastgrad`); None when the networks are not plain
        MLPs (GRUs, dropout): use autograd then."""
        chain = self._chain
        if chain is None:
            return None
        B, W, C = x.shape
        H, lim = self.horizon, self.cfg.robust_limit
        out, saved = chain.forward(x.reshape(B, W * C))  # (B, (W + H) * C)
        recon = out[:, : W * C].view(B, W, C)
        # The forecast head reads the robust window; its input takes no gradient (the
        # reconstruction is detached in robust_input).
        x_in = robust_input(x, recon, lim) if lim else x
        proj = self.linear.proj
        x_t = x_in.transpose(1, 2)  # (B, C, W)
        cont = out[:, W * C :].view(B, H, C) + F.linear(x_t, proj.weight, proj.bias).transpose(1, 2)
        # The errors of the decoder's outputs (reconstruction, then continuation), the
        # loss's gradient by them, and the loss: the weighted sum of squared errors.
        err = torch.cat([(recon - x).view(B, W * C), (cont - future).view(B, H * C)], 1)
        g_out = err * self._loss_weights(err)
        loss = torch.dot(g_out.view(-1), err.view(-1)) * 0.5
        g_proj = g_out[:, W * C :].view(B, H, C).transpose(1, 2).reshape(B * C, H)
        torch.mm(g_proj.t(), x_t.reshape(B * C, W), out=grad_of(proj.weight))
        torch.sum(g_proj, 0, out=grad_of(proj.bias))
        chain.backward(g_out, saved)
        return loss


def build(cfg: SOTASettings, n_channels: int, window: int) -> SOTA:
    """The network for the pipeline's ``model`` section (the registry's entry point)."""
    return SOTA(SOTAConfig(**cfg.network_args(n_channels, window)))


SETTINGS = SOTASettings
