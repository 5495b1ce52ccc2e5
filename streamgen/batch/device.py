"""``device="auto"``: CUDA when available, else CPU (design.md §1)."""

from __future__ import annotations

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
