"""``device="auto"``: CUDA when available, else CPU (docs/architecture.md, "Layers and boundaries")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """Map ``"auto"`` to ``cuda`` (``cuda:local_rank`` under torchrun) or ``cpu``.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank or 0)
    return torch.device("cpu")


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (0: leave as is), then restore.

    One thread by default in batch mode (``model.cpu_threads``): on a small machine shared
    with other processes, two OpenMP threads made a GAN step ~30x slower than one.
    """
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0:
            torch.set_num_threads(before)
