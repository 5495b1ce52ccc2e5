"""Online learner: one model shared by all keys, scored and trained in micro-batches.

* ``score(windows)`` scores every ready window of a batch in forward passes of at most
  ``score_chunk`` windows, so that a huge batch (100k keys due at once) has bounded peak
  memory: a GRU pass holds ~``(B, W + H, hidden)`` activations per pass.
* ``learn(spans)`` takes up to ``max_steps_per_batch`` optimizer steps (enough to see each
  new span about once) on ``train_batch`` examples: the batch's new spans, topped up from a
  replay buffer of past spans (reservoir sample), so that the model neither forgets nor
  overfits the latest batch. The optimizer (:class:`LeanOptimizer`) steps one flat buffer.
* A non-finite loss or gradient norm skips the step (counted). After ``max_bad_steps``
  consecutive bad steps the weights and optimizer roll back to the last good snapshot.
* ``device: auto`` picks CUDA when available. On CUDA, inputs go through one reusable pinned
  staging buffer: one host→device copy per scored chunk and one per ``learn`` call (all of its
  steps' batches at once), and each chunk's results come back in one device→host copy;
  ``bf16`` enables autocast on CUDA.

Examples
--------
>>> import numpy as np
>>> from streamgen.models.registry import model_settings
>>> lr = OnlineLearner(model_settings("sota", hidden=8, latent=4, horizon=2, device="cpu"), 1, 8)
>>> spans = np.random.default_rng(0).normal(size=(16, 10, 1)).astype("float32")
>>> stats = lr.learn(spans)
>>> lr.step, stats["skipped"]
(1, 0)
>>> s = lr.score(spans[:, :8])
>>> s.point_score.shape, s.forecast.shape
((16, 8), (16, 2, 1))
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streamgen.errors import CheckpointError
from streamgen.models.base import OnlineModel
from streamgen.models.registry import build_model
from streamgen.models.settings import ModelConfig

warnings.filterwarnings(
    "ignore", message="RNN module weights are not part of single contiguous chunk"
)

# Windows per scoring pass (``model.score_chunk`` overrides). On one CPU thread 1024 windows
# already amortize the per-op overhead (a GRU pass then holds ~25 MB of activations, ~100 MB
# for the RVAE's 4 samples). On an H200, 100k GRU windows scored in 0.14 s in passes of 4096
# (peak 0.75 GB SOTA, 2.9 GB RVAE) and in 0.08-0.13 s in passes of 16384 (2.9 GB, 11.4 GB);
# one pass of 8192 to 65536 windows scored 1.4-1.6M SOTA windows/s, so the GPU wants the
# larger passes and has the memory for them.
SCORE_CHUNK_CPU = 1024
SCORE_CHUNK_CUDA = 16384


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` → ``cuda:local_rank`` (``cuda:0`` without one, e.g. outside torchrun) if CUDA
    is available, else CPU; anything else is passed to torch.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank or 0)
    return torch.device("cpu")


def _pinned_at_least(buf: torch.Tensor, n: int) -> torch.Tensor:
    """``buf``, or a pinned float32 buffer of at least ``n`` values (doubling) if it is smaller."""
    if buf.numel() >= n:
        return buf
    return torch.empty(max(n, 2 * buf.numel()), pin_memory=True)


@dataclass
class ScoreResult:
    """Numpy views of a scored batch (normalized units)."""

    point_score: np.ndarray  # (B, W)
    forecast: np.ndarray  # (B, H, C)
    forecast_std: np.ndarray | None  # (B, H, C)
    recon: np.ndarray | None = None  # (B, W, C)


class LeanOptimizer:
    """Adam, AdamW or SGD with momentum (as in ``torch.optim``) on one flat parameter buffer.

    ``torch.optim`` imports ``torch._dynamo`` on first use (4-5 s at every process start)
    and routes each step through dynamo guards; with one small tensor per layer, its
    per-tensor ops cost more than the forward and backward pass of these models. Here every
    parameter (and its gradient) is a view into one flat buffer, so a step, the gradient
    norm and its clipping are a handful of ops on a single tensor. The state is plain
    tensors, so checkpoints stay loadable with ``weights_only=True``.

    On CUDA, cuDNN wants each GRU's weights in its own packed layout and copies them there
    on every call when they are views into this buffer (a few hundred KB per pass for these
    sizes); its "not part of single contiguous chunk" warning says so and is silenced here.
    """

    betas = (0.9, 0.999)
    eps = 1e-8
    momentum = 0.9

    def __init__(self, params: list[torch.Tensor], kind: str, lr: float, wd: float) -> None:
        self.kind, self.lr, self.wd = kind, lr, wd
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in params])
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self.flat[offset : offset + n].view_as(p)
            # Backward accumulates in place into an existing gradient: into this view.
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n
        self.t = 0
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat) if kind != "sgd" else torch.zeros(0)

    def zero_grad(self) -> None:
        self.grad.zero_()

    def grad_norm(self) -> torch.Tensor:
        """The gradient's L2 norm, as a tensor on the parameters' device (no sync)."""
        return torch.linalg.vector_norm(self.grad)

    def scale_grad(self, total: float, max_norm: float) -> None:
        """Clip a gradient of norm ``total`` (from :meth:`grad_norm`) to ``max_norm``."""
        if math.isfinite(total) and total > max_norm:
            self.grad.mul_(max_norm / (total + 1e-6))

    @torch.no_grad()
    def step(self) -> None:
        p, g = self.flat, self.grad
        self.t += 1
        if self.kind == "sgd":
            if self.wd:
                g = g + self.wd * p
            self.m.mul_(self.momentum).add_(g)
            p.add_(self.m, alpha=-self.lr)
            return
        b1, b2 = self.betas
        if self.kind == "adamw":
            p.mul_(1.0 - self.lr * self.wd)
        elif self.wd:
            g = g + self.wd * p
        self.m.lerp_(g, 1.0 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        denom = (self.v.sqrt() / (1.0 - b2**self.t) ** 0.5).add_(self.eps)
        p.addcdiv_(self.m, denom, value=-self.lr / (1.0 - b1**self.t))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "t": self.t, "m": self.m.clone(), "v": self.v.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind or state["m"].shape != self.m.shape:
            raise ValueError("optimizer state does not match this model/optimizer")
        self.t = int(state["t"])
        self.m.copy_(state["m"])
        self.v.copy_(state["v"])


class OnlineLearner:
    """Owns the model, optimizer, replay buffer and step counter."""

    def __init__(self, cfg: ModelConfig, n_channels: int, window: int) -> None:
        self.cfg = cfg
        self.n_channels = n_channels
        self.window = window
        self.device = resolve_device(cfg.device)
        if cfg.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.cpu_threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model: OnlineModel = build_model(cfg, n_channels, window).to(self.device)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.skipped_total = 0
        self.rollbacks_total = 0
        self._bad_streak = 0
        span = window + cfg.horizon
        self.replay = np.zeros((cfg.replay_size, span, n_channels), dtype=np.float32)
        self.replay_n = 0  # filled entries
        self.replay_seen = 0  # spans offered (reservoir sampling)
        self._good: dict[str, Any] | None = None
        self._cuda = self.device.type == "cuda"
        auto = SCORE_CHUNK_CUDA if self._cuda else SCORE_CHUNK_CPU
        self.score_chunk = cfg.score_chunk or auto
        # CUDA only: pinned host buffers, grown on demand and reused; an event marks when the
        # last copy out of the staging buffer finished, so it is never overwritten mid-copy.
        self._stage = torch.empty(0)
        self._stage_free: torch.cuda.Event | None = None
        self._out_host = torch.empty(0)

    def _make_optimizer(self) -> LeanOptimizer:
        c = self.cfg
        return LeanOptimizer(list(self.model.parameters()), c.optimizer, c.lr, c.weight_decay)

    @property
    def warm(self) -> bool:
        return self.step >= self.cfg.warmup_steps

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        """One host→device copy of ``arr`` as float32 (a zero-copy view on CPU)."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not self._cuda:
            return torch.from_numpy(arr)
        n = arr.size
        if self._stage_free is not None:
            self._stage_free.synchronize()
        self._stage = _pinned_at_least(self._stage, n)
        host = self._stage[:n]
        host.numpy()[:] = arr.reshape(-1)
        dev = host.view(arr.shape).to(self.device, non_blocking=True)
        if self._stage_free is None:
            self._stage_free = torch.cuda.Event()
        self._stage_free.record()
        return dev

    def _autocast(self):
        enabled = self.cfg.bf16 and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- scoring ---------------------------------------------------------------------------
    def score(self, windows: np.ndarray) -> ScoreResult:
        """Score ``(B, W, C)`` normalized windows, ``score_chunk`` windows per forward pass."""
        B, W = len(windows), windows.shape[1]
        H, C = self.cfg.horizon, self.n_channels
        chunk = max(1, self.score_chunk)
        # Per window: point scores (W), forecast (H*C), reconstruction (W*C) and, for the
        # RVAE, its spread (H*C), side by side in one row, so that a chunk comes back in one
        # device→host copy.
        width = 0
        buf = torch.empty(0)
        for lo in range(0, B, chunk):
            hi = min(B, lo + chunk)
            x = self._to_device(windows[lo:hi])
            with self._autocast():
                res = self.model.score(x)
            n = hi - lo
            parts = [res.point_score.reshape(n, W), res.forecast.reshape(n, H * C),
                     res.recon.reshape(n, W * C)]
            if res.forecast_std is not None:
                parts.append(res.forecast_std.reshape(n, H * C))
            row = torch.cat([p.float() for p in parts], dim=1)  # (n, width)
            if not width:
                width = row.shape[1]
                buf = self._result_buffer(B * width)
            # On CUDA into pinned memory, contiguous: a truly asynchronous copy, overlapping
            # the next chunk's forward pass.
            buf[lo * width : hi * width].view(n, width).copy_(row, non_blocking=self._cuda)
        if self._cuda:
            torch.cuda.current_stream(self.device).synchronize()
        out = buf[: B * width].numpy().reshape(B, width) if width else np.zeros((0, W), np.float32)
        f_end = W + H * C
        r_end = f_end + W * C
        has_std = width > r_end
        return ScoreResult(
            point_score=out[:, :W].copy(),
            forecast=out[:, W:f_end].reshape(B, H, C).copy(),
            forecast_std=out[:, r_end:].reshape(B, H, C).copy() if has_std else None,
            recon=out[:, f_end:r_end].reshape(B, W, C).copy(),
        )

    def _result_buffer(self, n: int) -> torch.Tensor:
        """A float32 buffer of ``n`` values: reused pinned memory on CUDA, fresh on CPU."""
        if not self._cuda:
            return torch.empty(n)
        self._out_host = _pinned_at_least(self._out_host, n)
        return self._out_host[:n]

    # -- learning --------------------------------------------------------------------------
    def _add_replay(self, spans: np.ndarray) -> None:
        """Reservoir sampling: every span offered so far is in the buffer with equal chance."""
        cap = self.cfg.replay_size
        if cap == 0 or len(spans) == 0:
            return
        fill = min(cap - self.replay_n, len(spans))
        if fill > 0:
            self.replay[self.replay_n : self.replay_n + fill] = spans[:fill]
            self.replay_n += fill
        rest = spans[max(fill, 0) :]
        if len(rest):
            # The i-th later span replaces a random entry with probability cap / seen_i.
            seen = self.replay_seen + max(fill, 0) + 1 + np.arange(len(rest))
            j = self.rng.integers(0, seen)
            hit = j < cap
            self.replay[j[hit]] = rest[hit]
        self.replay_seen += len(spans)

    def _training_batch(self, spans: np.ndarray) -> np.ndarray:
        n_max = self.cfg.train_batch
        n_replay = 0
        if self.replay_n:
            n_replay = min(self.replay_n, max(1, int(round(n_max * self.cfg.replay_fraction))))
        n_new = min(len(spans), n_max - n_replay)
        if len(spans) > n_new:
            # Without replacement inside a step; across steps each span is drawn about once.
            new = spans[self.rng.choice(len(spans), n_new, replace=False)]
        else:
            new = spans
        if n_replay:
            idx = self.rng.integers(0, self.replay_n, n_max - len(new))
            return np.concatenate([new, self.replay[idx]])
        return new

    def learn(self, spans: np.ndarray) -> dict[str, float]:
        """Train on ``(N, W + H, C)`` normalized spans (input window + continuation target)."""
        stats = {"loss": float("nan"), "kl": float("nan"), "skipped": 0, "rolled_back": 0}
        if len(spans) == 0 and self.replay_n == 0:
            return stats
        W = self.window
        if len(spans):
            # Never train on (or replay) non-finite input; the engine's decoder already
            # rejects such records, this guards direct callers.
            spans = spans[np.isfinite(spans).all(axis=(1, 2))]
        per_step = max(1, int(self.cfg.train_batch * (1.0 - self.cfg.replay_fraction)))
        n_steps = min(self.cfg.max_steps_per_batch, max(1, -(-len(spans) // per_step)))
        self.model.train()
        # Every step's batch drawn up front (the same draws, in the same order, as one at a
        # time) and sent to the device in one copy.
        batches = [self._training_batch(spans) for _ in range(n_steps)]
        if not batches or len(batches[0]) == 0:
            n_steps = 0
        steps = self._to_device(np.stack(batches)) if n_steps else None
        clip = self.cfg.grad_clip
        nan = torch.full((), float("nan"), device=self.device)
        # Models that can set their gradients by hand (the MLP SOTA: models/fastgrad.py,
        # 2-3x cheaper than autograd on one CPU thread) do so unless autocast is on.
        by_hand = not (self.cfg.bf16 and self._cuda)
        for k in range(n_steps):
            assert steps is not None
            t = steps[k]
            opt = self.optimizer  # a rollback below may replace it
            kl = nan  # replaced by the model's KL term if it has one (the RVAE)
            # Gradients before looking at the loss, so that loss, gradient norm and KL come
            # back to the host in one read (one device sync per step on CUDA); a non-finite
            # loss only costs a wasted backward, its gradient is dropped below.
            loss = self.model.loss_with_grads(t[:, :W], t[:, W:], self.step) if by_hand else None
            if loss is None:
                with self._autocast():
                    out, loss = self.model(t[:, :W], t[:, W:], step=self.step)
                opt.zero_grad()
                loss.backward()
                if out.kl is not None:
                    kl = out.kl.detach().float()
            vals = torch.stack([loss.detach().float(), opt.grad_norm(), kl]).tolist()
            loss_v, gnorm, kl_v = vals
            # A non-finite loss, or an exploding (or non-finite) gradient norm, is a bad step.
            ok = math.isfinite(loss_v) and math.isfinite(gnorm) and gnorm < 1e6 * clip
            if ok:
                opt.scale_grad(gnorm, clip)
            else:
                self.optimizer.zero_grad()
                self.skipped_total += 1
                self._bad_streak += 1
                stats["skipped"] += 1
                if self._bad_streak >= self.cfg.max_bad_steps:
                    self.rollback()
                    stats["rolled_back"] += 1
                continue
            opt.step()
            self.step += 1
            self._bad_streak = 0
            stats["loss"] = loss_v
            if kl is not nan:  # the model has a KL term
                stats["kl"] = kl_v
            if self.step % 100 == 1:
                self._snapshot()
        self._add_replay(spans)
        return stats

    def _shape_differences(self, state: dict[str, Any]) -> list[str]:
        """The settings that shape the model and differ between a checkpoint and this
        pipeline, named as a user sets them."""
        out = []
        if state.get("window") not in (None, self.window):
            out.append(f"window.length: checkpoint {state['window']}, pipeline {self.window}")
        if state.get("n_channels") not in (None, self.n_channels):
            out.append(f"channels: checkpoint {state['n_channels']}, data {self.n_channels}")
        args = state.get("model_args") or {}
        for name in ("name", "arch", "hidden", "latent", "layers", "horizon"):
            mine = getattr(self.cfg, name)
            if name in args and args[name] != mine:
                out.append(f"model.{name}: checkpoint {args[name]!r}, pipeline {mine!r}")
        return out

    def _snapshot(self) -> None:
        self._good = {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def rollback(self) -> None:
        """Restore the last good weights and optimizer state (or re-initialize)."""
        if self._good is not None:
            self.model.load_state_dict(self._good["model"])
            self.optimizer.load_state_dict(self._good["optimizer"])
        else:
            self.model = build_model(self.cfg, self.n_channels, self.window).to(self.device)
            self.optimizer = self._make_optimizer()
        self._bad_streak = 0
        self.rollbacks_total += 1

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_args": self.cfg.model_dump(),
            "n_channels": self.n_channels,
            "window": self.window,
            "step": self.step,
            "skipped_total": self.skipped_total,
            "rollbacks_total": self.rollbacks_total,
            "replay": torch.from_numpy(self.replay[: self.replay_n].copy()),
            "replay_seen": self.replay_seen,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        diffs = self._shape_differences(state)
        if diffs:
            raise CheckpointError("checkpoint does not fit the pipeline: " + "; ".join(diffs))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, AttributeError) as exc:
            # E.g. a checkpoint of another architecture (the GRU models before 0.2) or size.
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            name = self.cfg.name
            raise CheckpointError(f"checkpoint does not fit model {name!r}: {msg}") from None
        self.step = int(state["step"])
        self.skipped_total = int(state.get("skipped_total", 0))
        self.rollbacks_total = int(state.get("rollbacks_total", 0))
        rep = state["replay"].numpy()
        n = min(len(rep), len(self.replay))
        self.replay[:n] = rep[:n]
        self.replay_n = n
        self.replay_seen = int(state["replay_seen"])
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        self._snapshot()


__all__ = ["OnlineLearner", "ScoreResult", "resolve_device"]
