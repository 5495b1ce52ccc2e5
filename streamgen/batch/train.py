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
* **DDP** under ``torchrun``: the VAE is wrapped in ``DistributedDataParallel``; the GAN
  averages gradients by hand (see :func:`~streamgen.batch.distributed.average_gradients`).
  A ``DistributedSampler`` shards each epoch. Steps whose loss is non-finite are skipped on
  every rank together (design.md §2).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset
from tqdm import tqdm

from streamgen.batch.checkpoint import (
    BatchModel,
    build_model,
    cpu_state,
    save_checkpoint,
)
from streamgen.batch.device import resolve_device
from streamgen.batch.distributed import (
    DistContext,
    all_agree,
    average_gradients,
    broadcast_flag,
    dist_from_env,
    init_process_group,
)
from streamgen.batch.quality import mmd_rbf
from streamgen.errors import ConfigError
from streamgen.models.gan import GAN, diversity_ratio
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
    max_seconds: float | None = None  # stop after the epoch that crosses this
    progress: bool = True
    val_samples: int = 512  # GAN: generated windows compared with validation windows


@dataclass
class TrainResult:
    model: BatchModel  # best weights, eval mode, on the training device
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    epochs_run: int = 0
    stopped_early: bool = False


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
        # The encoder chases the current generator every step (izi_f, generator held fixed).
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
    init_process_group(ctx, device)
    if resume is not None:
        kind, model_args = resume["config"]["kind"], dict(resume["model_args"])
    torch.manual_seed(cfg.seed)
    model = build_model(kind, model_args).to(device)
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
    data = TensorDataset(torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32)))
    val = torch.from_numpy(np.ascontiguousarray(val_x if len(val_x) else train_x, np.float32))
    val = val.to(device)
    stepper = _Stepper(kind, model, opts, cfg, ctx, device)
    t0, stopped, epoch, state = time.monotonic(), False, start - 1, resume
    model.train()
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed + epoch + 7919 * ctx.rank)  # per rank, per epoch: resumable
        if ctx.enabled:
            sampler: Any = DistributedSampler(data, ctx.world_size, ctx.rank, seed=cfg.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, drop_last=False)
        sums: dict[str, float] = {}
        bar = tqdm(
            loader,
            desc=f"{kind} epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and ctx.is_main),
        )
        for (batch,) in bar:
            for k, v in stepper.step(batch.to(device, non_blocking=True)).items():
                sums[k] = sums.get(k, 0.0) + v
        row = {k: v / max(len(loader), 1) for k, v in sums.items()}
        row |= validate(kind, model, val, cfg, epoch) | {"epoch": float(epoch)}
        row["skipped_steps"] = float(stepper.skipped)
        history.append(row)
        if row["val"] < best_val:
            best_val, bad, best_state = row["val"], 0, cpu_state(model)
        else:
            bad += 1
        out_of_time = cfg.max_seconds is not None and time.monotonic() - t0 > cfg.max_seconds
        stopped = broadcast_flag(bad >= cfg.patience or out_of_time, ctx, device)
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
            save_checkpoint(state, checkpoint_path)
        if cfg.progress and ctx.is_main:
            tqdm.write(
                f"{kind} epoch {epoch + 1}: "
                + ", ".join(
                    f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "skipped_steps")
                )
            )
        if stopped:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    # Post-training fits that are part of the model (VAE: ex-post prior; GAN: critic stats);
    # they go into the checkpoint's best weights too.
    train_t = torch.from_numpy(np.array(train_x, dtype=np.float32)).to(device)
    if isinstance(model, GAN) and len(train_t) > 1:
        model.fit_score_stats(train_t)
    elif isinstance(model, VAE) and len(train_t) > 1:
        model.fit_prior(train_t)
    if state is not None and checkpoint_path is not None and ctx.is_main:
        save_checkpoint(state | {"best_model": cpu_state(model)}, checkpoint_path)
    best_epoch = int(min(history, key=lambda r: r["val"])["epoch"]) if history else -1
    return TrainResult(model, history, best_epoch, epoch + 1, stopped)


__all__ = ["TrainConfig", "TrainResult", "train", "validate"]
