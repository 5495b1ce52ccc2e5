"""The engine's own per-slot state: forecast carry-over, flag state and window counts.

The other per-key components (:class:`~streamgen.core.normalize.Normalizer`,
:class:`~streamgen.core.calibrate.Calibrator`, :class:`~streamgen.core.keyar.KeyAR`, ...)
keep their state in arrays indexed by the key's slot in the
:class:`~streamgen.core.window.WindowStore`; :class:`SlotState` does the same for what the
engine itself carries from one batch to the next, with the same ``ensure`` / ``reset`` /
``state_dict`` / ``load_state_dict`` shape. The arrays are plain numpy attributes: the engine
reads and writes them vectorized (``slots.has_fc[idx] = ...``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# since_flag of a key never flagged (far beyond any window length).
NEVER = 1 << 40

# The per-slot arrays a checkpoint carries (the names are the checkpoint's keys).
_STATE = ("prev_fc", "fc_age", "has_fc", "last_anom", "since_flag", "n_windows")


class SlotState:
    """Per slot:

    * ``prev_fc`` ``(H, C)``: the continuation of the key's last scored window, in raw units;
    * ``fc_age``: points that arrived since it was made (point ``i`` after it uses forecast
      step ``i``); ``has_fc``: whether there is one;
    * ``last_anom``: the key's newest record was flagged (its normalizer holds still);
    * ``since_flag``: records since the key's last flagged one (the shape detector sits out
      while the window still holds a flagged point; :data:`NEVER` if none);
    * ``n_windows``: windows of the key scored so far (continuation sampling).
    """

    def __init__(self, horizon: int, n_channels: int) -> None:
        self.prev_fc = np.zeros((0, horizon, n_channels), np.float32)
        self.fc_age = np.zeros(0, np.int64)
        self.has_fc = np.zeros(0, bool)
        self.last_anom = np.zeros(0, bool)
        self.since_flag = np.zeros(0, np.int64)
        self.n_windows = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.has_fc)

    def ensure(self, n: int) -> None:
        """Grow to at least ``n`` slots (new slots as :meth:`reset` leaves them)."""
        pad = n - len(self.has_fc)
        if pad <= 0:
            return
        H, C = self.prev_fc.shape[1:]
        self.prev_fc = np.concatenate([self.prev_fc, np.zeros((pad, H, C), np.float32)])
        self.fc_age = np.concatenate([self.fc_age, np.zeros(pad, np.int64)])
        self.has_fc = np.concatenate([self.has_fc, np.zeros(pad, bool)])
        self.last_anom = np.concatenate([self.last_anom, np.zeros(pad, bool)])
        self.since_flag = np.concatenate([self.since_flag, np.full(pad, NEVER, np.int64)])
        self.n_windows = np.concatenate([self.n_windows, np.zeros(pad, np.int64)])

    def reset(self, slots: int | np.ndarray) -> None:
        """Slots taken over by new keys start from nothing (``prev_fc`` stays: ``has_fc``
        guards it)."""
        self.has_fc[slots] = False
        self.fc_age[slots] = 0
        self.last_anom[slots] = False
        self.since_flag[slots] = NEVER
        self.n_windows[slots] = 0

    def state_dict(self, slots: np.ndarray) -> dict[str, Any]:
        """The state of ``slots`` as tensors, one entry per array (checkpoint layout)."""
        return {name: torch.from_numpy(getattr(self, name)[slots].copy()) for name in _STATE}

    def load_state_dict(self, state: dict[str, Any], slots: np.ndarray) -> None:
        """Restore :meth:`state_dict` output into ``slots`` (grown to hold them already).
        A checkpoint without ``since_flag`` (older) leaves those slots as never flagged."""
        slots = np.asarray(slots, np.int64)
        if not len(slots):
            return
        for name in _STATE:
            if name == "since_flag" and name not in state:  # older checkpoints lack it
                self.since_flag[slots] = NEVER
                continue
            arr = getattr(self, name)
            arr[slots] = np.asarray(state[name].numpy(), arr.dtype).reshape(
                (len(slots), *arr.shape[1:])
            )
