"""Building blocks shared by the sequence models."""

from __future__ import annotations

import torch
from torch import nn


class GRUEncoder(nn.Module):
    """GRU over a window; returns the last layer's final hidden state ``(B, hidden)``."""

    def __init__(self, n_channels: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(
            n_channels, hidden, num_layers=layers, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)  # h: (layers, B, hidden)
        return h[-1]


class TeacherForcedDecoder(nn.Module):
    """Recurrent decoder conditioned on a latent code.

    Over the window it is teacher-forced: step ``t`` sees the true ``x[t-1]`` and the latent
    ``z`` and emits the parameters for ``x[t]``. After the window it continues on its own,
    feeding back its mean prediction, for ``horizon`` steps. ``n_params`` outputs per channel:
    1 (mean) for the autoencoder, 2 (mean, log-variance) for the VAE.
    """

    def __init__(
        self, n_channels: int, latent: int, hidden: int, layers: int, dropout: float,
        n_params: int,
    ) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.n_params = n_params
        self.init = nn.Linear(latent, hidden * layers)
        self.gru = nn.GRU(
            n_channels + latent, hidden, num_layers=layers, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.out = nn.Linear(hidden, n_channels * n_params)
        self.layers = layers
        self.hidden = hidden

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, horizon: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, W, C = x.shape
        h0 = torch.tanh(self.init(z)).view(B, self.layers, self.hidden).transpose(0, 1)
        h0 = h0.contiguous()
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # (B, W, C)
        zs = z.unsqueeze(1).expand(B, W, z.shape[-1])
        y, h = self.gru(torch.cat([prev, zs], dim=-1), h0)  # (B, W, hidden)
        recon = self.out(y).view(B, W, C, self.n_params)
        # Continuation: first input is the last observed point, then own mean predictions.
        steps = []
        inp = x[:, -1:]
        z1 = z.unsqueeze(1)
        for _ in range(horizon):
            y1, h = self.gru(torch.cat([inp, z1], dim=-1), h)
            p = self.out(y1).view(B, 1, C, self.n_params)
            steps.append(p)
            inp = p[..., 0]
        cont = torch.cat(steps, dim=1)  # (B, H, C, n_params)
        return recon, cont
