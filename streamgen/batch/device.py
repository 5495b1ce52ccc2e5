"""CPU threads for the batch modes (``device="auto"`` is :func:`streamgen.models.online.resolve_device`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


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
