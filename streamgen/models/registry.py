"""Name → online model factory. ``build_model(cfg, n_channels, window)``."""

from __future__ import annotations

from collections.abc import Callable

from streamgen.config import ModelConfig
from streamgen.errors import ConfigError
from streamgen.models.base import OnlineModel
from streamgen.models.rvae import RVAE, RVAEConfig
from streamgen.models.sota import SOTA, SOTAConfig


def _shared(cfg: ModelConfig, n_channels: int, window: int) -> dict[str, object]:
    return dict(
        n_channels=n_channels, window=window, hidden=cfg.hidden, latent=cfg.latent,
        layers=cfg.layers, dropout=cfg.dropout, horizon=cfg.horizon,
        robust_limit=cfg.robust_limit, arch=cfg.arch,
    )


def _sota(cfg: ModelConfig, n_channels: int, window: int) -> OnlineModel:
    return SOTA(SOTAConfig(**_shared(cfg, n_channels, window)))  # type: ignore[arg-type]


def _rvae(cfg: ModelConfig, n_channels: int, window: int) -> OnlineModel:
    return RVAE(
        RVAEConfig(
            **_shared(cfg, n_channels, window),  # type: ignore[arg-type]
            kl_weight=cfg.kl_weight, kl_anneal_steps=cfg.kl_anneal_steps,
            free_bits=cfg.free_bits, n_samples=cfg.n_samples,
        )
    )


REGISTRY: dict[str, Callable[[ModelConfig, int, int], OnlineModel]] = {"sota": _sota, "rvae": _rvae}


def build_model(cfg: ModelConfig, n_channels: int, window: int) -> OnlineModel:
    try:
        factory = REGISTRY[cfg.name]
    except KeyError:
        raise ConfigError(f"model.name: unknown model {cfg.name!r}") from None
    return factory(cfg, n_channels, window)
