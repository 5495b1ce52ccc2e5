"""The types that cross stages: :class:`Record` and :class:`DeadLetter`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record came from: a Kafka offset or a file row.

    ``partition`` is ``-1`` and ``topic`` is the file name for file sources; ``offset`` is then
    the 0-based data row number (header excluded).
    """

    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded observation: key, event time in ms since the epoch, channel values."""

    key: str
    ts_ms: int
    values: np.ndarray  # (C,) float64, all finite
    position: Position
    label: int | None = None  # optional ground truth carried through for evaluation


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, kept with its raw bytes and the reason."""

    raw: bytes
    position: Position
    reason: str
    key: str | None = None
    ts_ms: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "key": self.key,
            "ts_ms": self.ts_ms,
            **self.position.as_dict(),
            "raw": self.raw.decode("utf-8", errors="backslashreplace"),
        }
