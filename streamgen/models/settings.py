"""The settings of the online models, free of torch: the base every pipeline section
derives from (:class:`Settings`: frozen, unknown keys refused) and the settings all online
models share (:class:`ModelConfig`). A model's own settings class subclasses
:class:`ModelConfig` in the model's file (``streamgen/models/sota.py``); the registry
(``streamgen/models/registry.py``) names the models and ``streamgen/config.py`` validates
the ``model`` section against the class that ``model.name`` picks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """A section of the pipeline configuration: frozen, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Settings):
    """Settings every online model shares (the ``model`` section of a pipeline); each
    model's own class (next to the model) fixes ``name`` and adds its own settings."""

    name: str = "sota"
    # Network shape of both models. "gru": GRU encoder → latent → recurrent GRU decoder that
    # rebuilds the window and continues it H steps. "mlp": the same encoder/latent/decoder
    # roles as MLPs over the flattened window — about 60x cheaper per window on one CPU
    # thread, for CPU deployments that need the throughput.
    # "mlp" by default: it detected better than the GRU on the real-data and synthetic
    # suites (README, Benchmarks) and is ~15x faster on CPU; the GRU stays an option.
    arch: Literal["gru", "mlp"] = "mlp"
    # Width of the encoder/decoder (GRU state or MLP layers) and size of the bottleneck.
    # With the MLPs, wider (128) or a wider code (32) rebuilt level shifts and drifts too well
    # and lost PR-AUC on the benchmark suite (benchmarks/bench_detection.py); narrower ones
    # forecast worse.
    hidden: int = Field(default=64, ge=4, le=4096)
    latent: int = Field(default=16, ge=1, le=1024)
    layers: int = Field(default=1, ge=1, le=8)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    horizon: int = Field(default=8, ge=1, le=1024)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(default=2e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    grad_clip: float = Field(default=1.0, gt=0.0)
    device: str = "auto"
    # CPU threads for torch. 1 by default: on small machines shared with a broker and other
    # processes, OpenMP threads that spin-wait for a busy core made small ops ~15x slower
    # than one thread in our measurements. 0 keeps torch's default (one per core).
    cpu_threads: int = Field(default=1, ge=0)
    bf16: bool = False
    # Windows per scoring pass; 0 = automatic (1024 on CPU, 16384 on CUDA). Bounds peak
    # memory when many keys are due at once; measured on an H200 for 100k windows, 16384
    # peaked at 2.9 GB (SOTA) and 11.4 GB (RVAE, 4 samples): lower it on a small GPU.
    score_chunk: int = Field(default=0, ge=0)
    seed: int = 0
    # Training: at most this many windows per optimizer step (new ones first, then replay).
    train_batch: int = Field(default=64, ge=1)
    replay_size: int = Field(default=2048, ge=0)
    replay_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    # Optimizer steps per micro-batch: enough for each new span to be seen about once
    # (ceil(new / (train_batch * (1 - replay_fraction)))), capped here so that a burst cannot
    # stall scoring; the cap is what trades learning for throughput on a busy stream. 32
    # covers a full 1024-record batch. With the GRU, 8 steps (and warmup_steps 12) was 2.2x
    # faster and gained mean PR-AUC on the full benchmark suite (sota 0.378 -> 0.421, rvae
    # 0.425 -> 0.456; 3 seeds) but lost it on noise bursts and frequency changes and
    # forecast 18% worse (1.20x vs 1.02x the best naive forecast); with the MLP it lost
    # PR-AUC (0.618 -> 0.590 on the quick suite). 0 turns learning off.
    max_steps_per_batch: int = Field(default=32, ge=0)
    # Training steps before the model's score joins the fused score (core/fusion.py); until
    # then the key's forecast and first-difference detectors score alone. 10 steps (about
    # 320 new windows) gained 0.016 mean VUS-PR over 50 on the real-data suite.
    warmup_steps: int = Field(default=10, ge=0)
    # Both models, when scoring: the window is encoded a second time, and the forecast head
    # reads it, with every point pulled to within this many normalized units of the first
    # reconstruction (0 = off), so that an outlier inflates its own error but not its
    # neighbours' (the points after a spike otherwise outscored it). 1.5 beat 3 and 0.
    robust_limit: float = Field(default=1.5, ge=0.0)
    # Score = w_last*err(last point) + w_window*mean err(window) + w_forecast*err(1-step fcst).
    # The last point's reconstruction error carries most of the signal (without it PR-AUC
    # fell 0.09); window and forecast terms add 0.01-0.02 each on the benchmark suite. On
    # the real-data suite (64-point windows, fused score) this blend gave VUS-PR 0.253 and
    # the window term alone 0.247, last point alone 0.240 (one seed); the window term alone
    # also kept flagging a whole window's length after each anomaly.
    score_last: float = Field(default=1.0, ge=0.0)
    score_window: float = Field(default=0.5, ge=0.0)
    score_forecast: float = Field(default=1.0, ge=0.0)
    # Roll back to the last good weights after this many consecutive skipped steps.
    max_bad_steps: int = Field(default=5, ge=1)
    # Continuations come from a per-key ridge autoregression (core/keyar.py) on the robust
    # window: order p (lags, at most window.length are used; 0 = off: the model's own
    # continuation), the decay of older spans per new one (0.998: ~500 spans of memory) and
    # the ridge pull toward a last-value forecast. Quick suite, seed 0, mean of 9 streams:
    # 0.61x the best naive forecast (MLP) and 0.64x (GRU) vs 0.87x and 1.05x without; order
    # 24 gave 0.63x, 16 gave 0.69x (MLP). The fits learn with the model (not when
    # max_steps_per_batch is 0).
    ar_order: int = Field(default=32, ge=0, le=1024)
    ar_forget: float = Field(default=0.998, gt=0.0, le=1.0)
    ar_ridge: float = Field(default=1.0, gt=0.0)

    def network_args(self, n_channels: int, window: int) -> dict[str, Any]:
        """The network-shape arguments every model's network config takes
        (:class:`~streamgen.models.base.SeqModelConfig`)."""
        return dict(
            n_channels=n_channels, window=window, hidden=self.hidden, latent=self.latent,
            layers=self.layers, dropout=self.dropout, horizon=self.horizon,
            robust_limit=self.robust_limit, arch=self.arch,
        )
