"""The KL term of the variational models (VAE, RVAE): its value, annealing and free bits.

* :func:`gaussian_kl`: KL(N(mu, e^logvar) || N(0, I)) per latent dimension;
* :func:`annealed_weight`: the KL weight warmed up linearly from 0 to ``weight`` over
  ``anneal_steps`` training steps (Bowman et al. 2016), against posterior collapse early on;
* :func:`free_bits_kl`: the summed per-dimension KL with each dimension counted at least
  ``free_bits`` nats (Kingma et al. 2016), so the posterior cannot collapse onto the prior.

Examples
--------
>>> import torch
>>> annealed_weight(250, 1.0, 1000), annealed_weight(5000, 0.5, 1000), annealed_weight(0, 1.0, 0)
(0.25, 0.5, 1.0)
>>> kl = gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))
>>> float(kl.sum()), float(free_bits_kl(kl.mean(0), 0.1))
(0.0, 0.30000001192092896)
"""

from __future__ import annotations

import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, I)) per latent dimension, the shape of ``mu``."""
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)


def annealed_weight(step: int, weight: float, anneal_steps: int) -> float:
    """The KL weight after ``step`` training steps: ``weight * min(1, step / anneal_steps)``;
    ``weight`` from the start when ``anneal_steps <= 0`` (no warm-up)."""
    if anneal_steps <= 0:
        return weight
    return weight * min(1.0, float(step) / anneal_steps)


def free_bits_kl(kl_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Sum of the per-dimension KL ``kl_dim`` ``(L,)`` with each term at least ``free_bits``
    (no floor when ``free_bits <= 0``)."""
    if free_bits > 0:
        kl_dim = kl_dim.clamp(min=free_bits)
    return kl_dim.sum()


__all__ = ["annealed_weight", "free_bits_kl", "gaussian_kl"]
