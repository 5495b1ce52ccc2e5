"""The online models, declared once: name → the module that holds the model.

Each module defines ``SETTINGS`` (its settings class: a subclass of
:class:`~streamgen.models.settings.ModelConfig` whose ``name`` is ``Literal["<name>"]``,
with the model's own settings) and ``build(settings, n_channels, window)`` returning an
:class:`~streamgen.models.base.OnlineModel`. Everything else derives from :data:`MODELS`:
the ``model`` section of the configuration (a union on ``model.name``), the ``--model``
choices of the commands, the benchmark's detector list and the tests' parametrization.
Adding a model is one new module and one line here (docs/architecture.md, "Add a
model").

This module imports neither torch nor pydantic (the command-line parsers read
:data:`MODEL_NAMES` and must start fast); a model's module is imported when first needed.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from streamgen.errors import ConfigError

if TYPE_CHECKING:
    from streamgen.models.base import OnlineModel
    from streamgen.models.settings import ModelConfig

# name → (module, one line for help texts). The first is the default model.
MODELS: dict[str, tuple[str, str]] = {
    "sota": ("streamgen.models.sota", "window autoencoder with a forecasting head"),
    "rvae": ("streamgen.models.rvae", "recurrent variational autoencoder (ELBO)"),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
DEFAULT_MODEL: str = MODEL_NAMES[0]


def unknown_model(name: str) -> str:
    """The error message for a model name not in :data:`MODELS`, with the closest one."""
    close = difflib.get_close_matches(name, MODEL_NAMES, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"model.name: unknown model {name!r}{hint}; models: {', '.join(MODEL_NAMES)}"


def model_module(name: str) -> ModuleType:
    """The module of model ``name`` (ConfigError naming the known models otherwise)."""
    try:
        path = MODELS[name][0]
    except KeyError:
        raise ConfigError(unknown_model(name)) from None
    return importlib.import_module(path)


def settings_class(name: str) -> type[ModelConfig]:
    """The settings class of model ``name``."""
    cls: type[ModelConfig] = model_module(name).SETTINGS
    return cls


def settings_classes() -> dict[str, type[ModelConfig]]:
    """Every model's settings class, by name (imports every model's module)."""
    return {name: settings_class(name) for name in MODEL_NAMES}


def model_settings(name: str = DEFAULT_MODEL, **values: Any) -> ModelConfig:
    """Validated settings of model ``name`` (``model_settings("rvae", kl_weight=0.5)``)."""
    return settings_class(name)(**values)


def build_model(cfg: ModelConfig, n_channels: int, window: int) -> OnlineModel:
    """The network of the model ``cfg.name`` for ``n_channels`` channels and windows of
    ``window`` points (not yet on a device)."""
    module = model_module(cfg.name)
    if not isinstance(cfg, module.SETTINGS):
        cfg = module.SETTINGS(**cfg.model_dump())
    model: OnlineModel = module.build(cfg, n_channels, window)
    return model
