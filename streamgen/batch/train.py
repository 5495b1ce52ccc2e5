"""Epoch loop for the batch GAN and VAE: early stopping, per-epoch checkpoints, resume, DDP.

* **Early stopping** on the held-out (later-in-time) split: VAE — unannealed negative ELBO;
  GAN — MMD² between generated and validation windows (the critic's own loss is not
  comparable across epochs since the critic keeps changing). The best weights are restored.
* **Checkpoints** are plain dicts written atomically every epoch (rank 0 only)::

      {"model", "optimizer", "model_args", "epoch", "config",
       "best_model", "best_val", "bad_epochs", "history"}

  and load with ``torch.load(..., weights_only=True)``. ``model_args`` rebuilds the module,
  so shape-defining arguments come back from the checkpoint; ``config["data"]`` carries what
  the caller needs to score with it alone (scaler, channels, window length).
* **Resume**: ``resume=ckpt`` continues after the checkpoint's epoch with its optimizer state,
  patience counter and history; epoch ``e`` reseeds with ``seed + e`` so a resumed run draws
  the same batches as an uninterrupted one.
* **Step budget**: an epoch is at most ``steps_per_epoch`` batches of windows drawn at random
  without replacement (default: a full pass, capped at :data:`AUTO_STEPS_PER_EPOCH` steps for
  the model kind). Overlapping stride-1 windows of a long history are mostly redundant, so
  100,000 rows train in the same number of steps as ~6,000 (README, backfill figures).
* **Stopping**: :attr:`TrainResult.stop_reason` is ``"epochs"``, ``"early_stopping"``,
  ``"max_seconds"`` (checked after every step, so a budget is kept within one step plus the
  closing validation) or ``"interrupted"`` (Ctrl-C during training: training stops, the best
  weights so far are used, the caller carries on).
* **Progress** on stderr: a tqdm bar per epoch when stderr is a terminal, else one plain line
  every ``progress_interval`` seconds (epoch, step, loss, elapsed, ETA).
* **DDP** under ``torchrun``: the VAE is wrapped in ``DistributedDataParallel``; the GAN
  averages gradients by hand (see :func:`~streamgen.batch.distributed.average_gradients`).
  A ``DistributedSampler`` shards each epoch. Steps whose loss is non-finite are skipped on
  every rank together (docs/architecture.md, "Faults").
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from streamgen.batch.checkpoint import BatchModel, build_batch_model, cpu_state
from streamgen.batch.device import cpu_threads
from streamgen.batch.distributed import (
    DistContext,
    all_agree,
    average_gradients,
    broadcast_flag,
    dist_from_env,
    init_process_group,
)
from streamgen.batch.kinds import DEFAULT_EPOCHS
from streamgen.batch.quality import mmd_rbf
from streamgen.core.checkpoint import save_atomic
from streamgen.errors import ConfigError
from streamgen.models.gan import GAN, diversity_ratio
from streamgen.models.online import resolve_device
from streamgen.models.vae import VAE


@dataclass(frozen=True)
class TrainConfig:
    """How to train; saved under ``config["train"]`` in checkpoints."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    max_seconds: float | None = None  # checked after every step
    progress: bool = True  # bar on a terminal, plain lines otherwise
    val_samples: int = 512  # GAN: generated windows compared with validation windows
    # Batches per epoch: None = a full pass capped at AUTO_STEPS_PER_EPOCH[kind]; 0 = a full
    # pass over every training window (no cap).
    steps_per_epoch: int | None = None
    val_windows: int = 2048  # VAE: held-out windows (a fixed random subset) per validation
    cpu_threads: int = 1  # torch threads on CPU while training; 0 = torch's default
    progress_interval: float = 5.0  # seconds between plain progress lines
    # At least this many batches in all: on a history too short to fill an epoch's cap,
    # epochs (and patience, in proportion) grow until they do. 0 = epochs as given.
    min_steps: int = 0


# Default cap on batches per epoch. With the default epochs (streamgen.batch.kinds: VAE 30,
# GAN 100) a long history trains 1,800 VAE steps (~60 ms each on one CPU thread at batch 64,
# window 64) and 3,000 GAN steps (~75 ms each), so that 100,000 rows train in a few minutes
# (README, backfill). A history under ~4,000 (VAE) / ~2,000 (GAN) training windows does a full
# pass per epoch.
AUTO_STEPS_PER_EPOCH = {"vae": 60, "gan": 30}

STOP_REASONS = ("epochs", "early_stopping", "max_seconds", "interrupted")


def default_min_steps(kind: str, epochs: int | None, steps_per_epoch: int | None) -> int:
    """``TrainConfig.min_steps`` for ``backfill``: as many batches as a long history trains
    with the default epochs (:mod:`streamgen.batch.kinds`) and per-epoch cap, however short
    the history; 0 (no budget) when epochs or batches per epoch are given.

    >>> default_min_steps("vae", None, None), default_min_steps("gan", None, None)
    (1800, 3000)
    >>> default_min_steps("vae", 5, None), default_min_steps("vae", None, 3)
    (0, 0)
    """
    if epochs is not None or steps_per_epoch is not None:
        return 0
    return DEFAULT_EPOCHS[kind] * AUTO_STEPS_PER_EPOCH[kind]


@dataclass
class TrainResult:
    model: BatchModel  # best weights, eval mode, on the training device
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    epochs_run: int = 0
    stopped_early: bool = False
    stop_reason: str = "epochs"  # one of STOP_REASONS
    steps: int = 0  # optimizer steps taken in this call (not counting a resumed run's)
    seconds: float = 0.0  # wall time of the training loop


def steps_per_epoch(kind: str, n_windows: int, cfg: TrainConfig) -> int:
    """Batches per epoch for ``n_windows`` training windows (per rank under DDP)."""
    full = max(1, math.ceil(n_windows / cfg.batch_size))
    cap = cfg.steps_per_epoch
    if cap is None:
        cap = AUTO_STEPS_PER_EPOCH.get(kind, 0)
    return min(full, cap) if cap > 0 else full


def step_budget(cfg: TrainConfig, n_steps: int) -> TrainConfig:
    """``cfg`` with epochs raised to reach ``cfg.min_steps`` batches of ``n_steps`` per epoch,
    and patience raised in the same proportion (it stays the same share of training).

    >>> c = step_budget(TrainConfig(epochs=30, patience=10, min_steps=1800), 25)
    >>> c.epochs, c.patience
    (72, 24)
    >>> step_budget(c, 60) == c  # already enough (epochs never drop)
    True
    """
    if cfg.min_steps <= 0 or cfg.epochs <= 0 or cfg.epochs * n_steps >= cfg.min_steps:
        return cfg
    epochs = math.ceil(cfg.min_steps / max(n_steps, 1))
    return replace(cfg, epochs=epochs, patience=math.ceil(cfg.patience * epochs / cfg.epochs))


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class _Progress:
    """Progress on stderr: tqdm bars on a terminal, else a plain line every few seconds."""

    def __init__(self, kind: str, cfg: TrainConfig, enabled: bool, total_steps: int) -> None:
        self.kind, self.cfg, self.total = kind, cfg, max(total_steps, 1)
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = self.t0
        self.done = 0
        self.bar: Any = None
        self.val = ""

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.tty:
            self.bar = tqdm(total=steps, desc=f"{self.kind} epoch {epoch + 1}/{self.cfg.epochs}",
                            leave=False)  # fmt: skip

    def step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if not self.enabled or now - self.last < self.cfg.progress_interval:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        if self.cfg.max_seconds is not None:
            eta = min(eta, max(self.cfg.max_seconds - elapsed, 0.0))
        loss = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"backfill: {self.kind} epoch {epoch + 1}/{self.cfg.epochs} step {step}/{steps} "
              f"{loss}{self.val} elapsed {_clock(elapsed)} eta {_clock(eta)}",
              file=sys.stderr, flush=True)  # fmt: skip

    def end_epoch(self, epoch: int, row: dict[str, float], best: float) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.val = f" val {row['val']:.4g} (best {best:.4g})"
        if self.tty:
            tqdm.write(
                f"{self.kind} epoch {epoch + 1}: "
                + ", ".join(
                    f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "skipped_steps")
                )
            )

    def finish(self, reason: str, epochs_run: int, steps: int) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            print(f"backfill: {self.kind} training stopped ({reason}) after {epochs_run} "
                  f"epochs, {steps} steps, {_clock(time.monotonic() - self.t0)}",
                  file=sys.stderr, flush=True)  # fmt: skip


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


def _make_optimizers(kind: str, model: nn.Module, lr: float) -> dict[str, torch.optim.Optimizer]:
    if kind == "vae":
        return {"model": torch.optim.Adam(model.parameters(), lr=lr)}
    assert isinstance(model, GAN)
    # Adam with beta1 = 0 (no momentum) is the WGAN-GP recipe (Gulrajani et al. 2017).
    return {
        "critic": torch.optim.Adam(model.critic.parameters(), lr=lr, betas=(0.0, 0.9)),
        "generator": torch.optim.Adam(model.generator.parameters(), lr=lr, betas=(0.0, 0.9)),
        "encoder": torch.optim.Adam(model.encoder.parameters(), lr=lr),
    }


class _Stepper:
    """One optimizer step of either model kind; returns its metrics (or None if skipped)."""

    def __init__(
        self,
        kind: str,
        model: nn.Module,
        opts: dict[str, Any],
        cfg: TrainConfig,
        ctx: DistContext,
        device: torch.device,
    ) -> None:
        self.kind, self.model, self.opts, self.cfg = kind, model, opts, cfg
        self.ctx, self.device = ctx, device
        self.ddp: nn.Module = model
        if kind == "vae" and ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.n = 0
        self.skipped = 0

    def _apply(
        self, loss: torch.Tensor, opt: torch.optim.Optimizer, module: nn.Module, sync: bool
    ) -> bool:
        if not all_agree(bool(torch.isfinite(loss)), self.ctx, self.device):
            self.skipped += 1
            return False
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if sync:
            average_gradients(module.parameters(), self.ctx)
        # WGAN-GP is not clipped (the penalty already shapes the critic's gradients; clipping
        # would bias it); the norm is still computed to catch non-finite gradients.
        limit = self.cfg.grad_clip if self.kind == "vae" else float("inf")
        norm = nn.utils.clip_grad_norm_(module.parameters(), limit)
        if not torch.isfinite(norm):  # grads are already averaged: every rank agrees
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            return False
        opt.step()
        return True

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        self.n += 1
        if self.kind == "vae":
            _, loss = self.ddp(batch)
            self._apply(loss, self.opts["model"], self.model, sync=False)
            return {"loss": float(loss.detach())}
        gan = self.model
        assert isinstance(gan, GAN)
        d_loss, wdist = gan.critic_loss(batch)
        self._apply(d_loss, self.opts["critic"], gan.critic, sync=True)
        out = {"critic_loss": float(d_loss.detach()), "wdist": float(wdist)}
        if self.n % gan.config.n_critic == 0:
            with _frozen(gan.critic):
                g_loss = gan.generator_loss(batch.shape[0], batch.shape[1])
                self._apply(g_loss, self.opts["generator"], gan.generator, sync=True)
            out["gen_loss"] = float(g_loss.detach())
        # The encoder chases the generator (izi_f, generator held fixed) after each of its
        # steps: between two, the generator does not change. Stepping it after every critic
        # step as well cost ~40 % of a training step and bought nothing for the samples.
        if self.n % gan.config.n_critic != 0:
            return out
        with _frozen(gan.critic), _frozen(gan.generator):
            _, e_loss = gan(batch)
            self._apply(e_loss, self.opts["encoder"], gan.encoder, sync=True)
        out["enc_loss"] = float(e_loss.detach())
        return out


@torch.no_grad()
def validate(
    kind: str, model: nn.Module, val: torch.Tensor, cfg: TrainConfig, epoch: int
) -> dict[str, float]:
    """Held-out metric ``val`` (lower is better) plus diagnostics."""
    model.eval()
    try:
        if kind == "vae":
            assert isinstance(model, VAE)
            if len(val) > cfg.val_windows > 0:  # the same subset every epoch: comparable
                gen = torch.Generator().manual_seed(cfg.seed)
                val = val[torch.randperm(len(val), generator=gen)[: cfg.val_windows]]
            losses = [model.neg_elbo(b) * len(b) for b in val.split(1024)]
            return {"val": float(sum(losses) / len(val))}
        assert isinstance(model, GAN)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        fake = model.sample(cfg.val_samples, val.shape[1], generator=gen)
        real = val[torch.randperm(len(val), generator=gen)[: cfg.val_samples]]
        return {
            "val": mmd_rbf(real.cpu().numpy(), fake.cpu().numpy(), max_n=cfg.val_samples),
            "diversity": diversity_ratio(fake, real),
        }
    finally:
        model.train()


def train(
    kind: str,
    model_args: dict[str, Any],
    train_x: np.ndarray,
    val_x: np.ndarray,
    cfg: TrainConfig,
    checkpoint_path: str | Path | None = None,
    resume: dict[str, Any] | None = None,
    data_state: dict[str, Any] | None = None,
    ctx: DistContext | None = None,
) -> TrainResult:
    """Train a ``kind`` model on ``train_x`` ``(N, W, C)``; stop early on ``val_x``.

    ``val_x`` may be empty: the training windows then stand in for it (no early stopping
    signal beyond fit). ``data_state`` is stored in the checkpoint under ``config["data"]``.
    """
    ctx = ctx or dist_from_env()
    device = resolve_device(cfg.device, ctx.local_rank if ctx.enabled else None)
    with cpu_threads(cfg.cpu_threads if device.type == "cpu" else 0):
        return _train(kind, model_args, train_x, val_x, cfg, checkpoint_path, resume,
                      data_state, ctx, device)  # fmt: skip


def _train(
    kind: str,
    model_args: dict[str, Any],
    train_x: np.ndarray,
    val_x: np.ndarray,
    cfg: TrainConfig,
    checkpoint_path: str | Path | None,
    resume: dict[str, Any] | None,
    data_state: dict[str, Any] | None,
    ctx: DistContext,
    device: torch.device,
) -> TrainResult:
    init_process_group(ctx, device)
    if resume is not None:
        kind, model_args = resume["config"]["kind"], dict(resume["model_args"])
    torch.manual_seed(cfg.seed)
    model = build_batch_model(kind, model_args).to(device)
    opts = _make_optimizers(kind, model, cfg.lr)
    start, best_val, bad, best_state, history = 0, float("inf"), 0, None, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        for name, opt in opts.items():
            opt.load_state_dict(resume["optimizer"][name])
        start = int(resume["epoch"]) + 1
        best_val, bad = float(resume["best_val"]), int(resume["bad_epochs"])
        best_state, history = resume.get("best_model"), list(resume.get("history", []))
    if len(train_x) == 0 and start < cfg.epochs:
        raise ConfigError("input: no training windows (a key needs at least window.length rows)")
    data = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    val = torch.from_numpy(np.ascontiguousarray(val_x if len(val_x) else train_x, np.float32))
    val = val.to(device)
    per_rank = math.ceil(len(data) / ctx.world_size) if ctx.enabled else len(data)
    n_steps = steps_per_epoch(kind, per_rank, cfg)
    cfg = step_budget(cfg, n_steps)
    stepper = _Stepper(kind, model, opts, cfg, ctx, device)
    progress = _Progress(kind, cfg, cfg.progress and ctx.is_main,
                         max(cfg.epochs - start, 0) * n_steps)  # fmt: skip
    t0, epoch, state, reason = time.monotonic(), start - 1, resume, "epochs"
    model.train()
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed + epoch + 7919 * ctx.rank)  # per rank, per epoch: resumable
        if ctx.enabled:
            sampler = DistributedSampler(range(len(data)), ctx.world_size, ctx.rank,  # type: ignore[arg-type]
                                         seed=cfg.seed)  # fmt: skip
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.long)
        else:
            gen = torch.Generator().manual_seed(cfg.seed + epoch)
            order = torch.randperm(len(data), generator=gen)
        order = order[: n_steps * cfg.batch_size]
        batches = order.split(cfg.batch_size)
        sums: dict[str, float] = {}
        progress.start_epoch(epoch, len(batches))
        done = 0
        try:
            for idx in batches:
                for k, v in stepper.step(data[idx].to(device, non_blocking=True)).items():
                    sums[k] = sums.get(k, 0.0) + v
                done += 1
                progress.step(epoch, done, len(batches), {k: v / done for k, v in sums.items()})
                out_of_time = (
                    cfg.max_seconds is not None and time.monotonic() - t0 > cfg.max_seconds
                )
                if ctx.enabled and cfg.max_seconds is not None:
                    out_of_time = broadcast_flag(out_of_time, ctx, device)
                if out_of_time:
                    reason = "max_seconds"
                    break
        except KeyboardInterrupt:
            if ctx.enabled:  # ranks cannot agree on where they stopped
                raise
            reason = "interrupted"
        if done == 0 and epoch > start:  # nothing new to validate: keep the last epoch's state
            epoch -= 1
            break
        row = {k: v / max(done, 1) for k, v in sums.items()}
        row |= validate(kind, model, val, cfg, epoch) | {"epoch": float(epoch)}
        row["skipped_steps"] = float(stepper.skipped)
        if done < len(batches):
            row["steps"] = float(done)  # a partial epoch (max_seconds / interrupted)
        history.append(row)
        if row["val"] < best_val:
            best_val, bad, best_state = row["val"], 0, cpu_state(model)
        else:
            bad += 1
        if reason == "epochs" and broadcast_flag(bad >= cfg.patience, ctx, device):
            reason = "early_stopping"
        state = {
            "model": cpu_state(model),
            "optimizer": {k: o.state_dict() for k, o in opts.items()},
            "model_args": asdict(model.config),
            "epoch": epoch,
            "config": {"kind": kind, "train": asdict(cfg), "data": data_state or {}},
            "best_model": best_state,
            "best_val": best_val,
            "bad_epochs": bad,
            "history": history,
        }
        if checkpoint_path is not None and ctx.is_main:
            save_atomic(state, checkpoint_path)
        progress.end_epoch(epoch, row, best_val)
        if reason != "epochs":
            break
    seconds = time.monotonic() - t0
    progress.finish(reason, epoch + 1 - start, stepper.n)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    # Post-training fits that are part of the model (VAE: ex-post prior; GAN: critic stats);
    # they go into the checkpoint's best weights too.
    train_t = data.to(device)
    if isinstance(model, GAN) and len(train_t) > 1:
        model.fit_score_stats(_subsample(train_t, 20_000, cfg.seed))
    elif isinstance(model, VAE) and len(train_t) > 1:
        model.fit_prior(train_t, max_points=5000)  # the EM is O(points); 5,000 fit 30 parts
    if state is not None and checkpoint_path is not None and ctx.is_main:
        save_atomic(state | {"best_model": cpu_state(model)}, checkpoint_path)
    best_epoch = int(min(history, key=lambda r: r["val"])["epoch"]) if history else -1
    return TrainResult(model, history, best_epoch, epoch + 1, reason != "epochs", reason,
                       stepper.n, seconds)  # fmt: skip


def _subsample(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most ``n`` rows of ``x``, drawn without replacement (all of them when fewer)."""
    if len(x) <= n:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]]


__all__ = [
    "AUTO_STEPS_PER_EPOCH",
    "STOP_REASONS",
    "TrainConfig",
    "TrainResult",
    "steps_per_epoch",
    "train",
    "validate",
]
