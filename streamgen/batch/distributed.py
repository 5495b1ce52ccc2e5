"""Process-group plumbing for ``torchrun``: who am I, and how to agree with the others.

Under ``torchrun`` the environment carries ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; this is
the one place in the batch package that reads it (the CLI edge, not the core). Backend: NCCL
on CUDA, gloo on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """World size, global rank and local rank of this process (1, 0, 0 when alone)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """Read ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (defaults: a single process).

    >>> dist_from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}).rank
    1
    >>> dist_from_env({}).enabled
    False
    """
    e = os.environ if env is None else env
    world = int(e.get("WORLD_SIZE", "1"))
    local = int(e.get("LOCAL_RANK", "0"))
    return DistContext(world, int(e.get("RANK", str(local))), local)


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the process group once (no-op when alone or already joined)."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def all_agree(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True only if ``flag`` is True on every rank (so all ranks take the same branch)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def broadcast_flag(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0.5)


def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Average gradients across ranks with one all-reduce over a flat buffer.

    This is the arithmetic of :class:`~torch.nn.parallel.DistributedDataParallel`, done by
    hand for the GAN: its three optimizers, selective freezing and double-backward gradient
    penalty do not fit DDP's one-forward-one-backward-all-parameters reducer.
    """
    if not ctx.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def finish() -> None:
    """Leave the process group if this process joined one.

    Every rank first meets the others at a barrier: a gloo rank that tears its sockets down
    while a peer is still finishing its last collective can make that peer's transport
    thread abort the process (seen as SIGABRT, "terminate called without an active
    exception", on a loaded two-core machine).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()
