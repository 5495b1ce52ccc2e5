"""The types that cross stages: :class:`Record` and :class:`DeadLetter`."""

from __future__ import annotations

import hashlib
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


#: Bytes of a dead letter's original record kept in its row (escaped, at most four times
#: as many characters): far below Kafka's default 1 MB message limit.
RAW_LIMIT_BYTES = 16_384


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
        """The dead-letter row. ``raw`` holds at most :data:`RAW_LIMIT_BYTES` of the original
        bytes (escaped), with the full length and a SHA-256 of all of them: a row must fit the
        next hop (a Kafka producer refuses messages over ``max_request_size``; a dead letter
        that does not fit would fail its sink, rewind the partition and fail again forever)."""
        raw = self.raw
        cut = len(raw) > RAW_LIMIT_BYTES
        return {
            "reason": self.reason,
            "key": self.key,
            "ts_ms": self.ts_ms,
            **self.position.as_dict(),
            "raw": raw[:RAW_LIMIT_BYTES].decode("utf-8", errors="backslashreplace"),
            "raw_bytes": len(raw),
            "raw_truncated": cut,
            "raw_sha256": hashlib.sha256(raw).hexdigest() if cut else None,
        }


# The dead-letter metric's reason label: a bounded set of categories (a label value per
# distinct reason text would carry field names and sizes into the label set), the first
# matching text wins.
_REASON_LABELS = (
    ("not valid JSON", "json"), ("JSON record is not an object", "json"),
    ("empty record", "empty"), ("malformed CSV", "csv"), ("row has more cells", "csv"),
    ("record of ", "size"), ("key longer", "key"), ("key field", "key"),
    ("input truncated", "input"),
    ("late", "late"), ("time skew", "time"), ("missing time", "time"),
    ("missing or invalid time", "time"), ("non-finite time", "time"), ("unparsable time", "time"),
    ("time out of range", "time"), ("invalid label", "label"), ("missing value field", "channels"),
    ("no numeric value fields", "channels"), ("value fields exceed", "channels"),
    ("missing value in field", "value"), ("non-finite value", "value"),
    ("non-numeric value", "value"), ("value magnitude", "value"),
)


def reason_label(reason: str | None) -> str:
    """The dead-letter metric's label for ``reason`` (``other`` when none matches).

    >>> reason_label("not valid JSON"), reason_label("non-numeric value in field x")
    ('json', 'value')
    """
    for needle, label in _REASON_LABELS:
        if reason and needle in reason:
            return label
    return "other"
