"""Read a recorded history file into per-row outcomes: records, dead letters, partial rows.

Decoding is the project's one decoder (:mod:`streamgen.io.files` + :mod:`streamgen.core.decode`);
this module only keeps what backfill needs on top of it:

* every input row's outcome in file order (a :class:`Record` or a :class:`DeadLetter`);
* the channel names the decoder settled on (for output headers);
* for rows dead-lettered only because a value is missing or not a finite number, their key,
  time and the values that *are* readable (:class:`PartialRow`). The decoder rightly keeps
  such rows out of scoring, but imputation needs them: their timestamp is a gap to fill and
  their finite channels are observations to condition on.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "h.csv")
>>> _ = open(p, "w").write("timestamp,a,b\\n1,1.0,2.0\\n2,nan,3.0\\n3,x,\\n")
>>> h = read_history(p)
>>> h.channels, len(h.records), [d.reason for d in h.dead]
(['a', 'b'], 1, ['non-finite value in field a', 'non-numeric value in field a'])
>>> h.partial[1].values.tolist(), h.partial[2].values.tolist()
([nan, 3.0], [nan, nan])
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamgen.config import DecodeConfig
from streamgen.core.decode import Decoder, parse_time_ms
from streamgen.core.ports import RawMessage
from streamgen.errors import ConfigError, DecodeError
from streamgen.io.files import read_raw
from streamgen.records import DeadLetter, Record

# Dead-letter reasons that mean "this row's values are (partly) missing", i.e. a gap.
_GAP_REASONS = ("non-finite value", "missing value", "non-numeric value")


@dataclass(frozen=True, slots=True)
class PartialRow:
    """A dead-lettered row whose key and time are readable; unreadable values are NaN."""

    row: int
    key: str
    ts_ms: int
    values: np.ndarray  # (C,) float64, NaN where missing


@dataclass
class History:
    """Every row of an input file, decoded; ``outcomes[i]`` belongs to data row ``i``."""

    path: str
    channels: list[str]
    outcomes: list[Record | DeadLetter]
    partial: dict[int, PartialRow] = field(default_factory=dict)

    @property
    def records(self) -> list[Record]:
        return [o for o in self.outcomes if isinstance(o, Record)]

    @property
    def dead(self) -> list[DeadLetter]:
        return [o for o in self.outcomes if isinstance(o, DeadLetter)]

    def key_and_time(self, row: int) -> tuple[str | None, int | None]:
        """Best-known key and time of an input row (None when unreadable)."""
        o = self.outcomes[row]
        if isinstance(o, Record):
            return o.key, o.ts_ms
        p = self.partial.get(row)
        return (p.key, p.ts_ms) if p is not None else (o.key, o.ts_ms)


def read_history(path: str | Path, decode: DecodeConfig | None = None) -> History:
    """Decode ``path`` (CSV/JSONL) row by row; raise ConfigError if no row is decodable."""
    cfg = decode or DecodeConfig()
    decoder = Decoder(cfg)
    outcomes: list[Record | DeadLetter] = []
    gap_msgs: list[RawMessage] = []
    for msg in read_raw(path):
        out = decoder.decode(msg)
        outcomes.append(out)
        if isinstance(out, DeadLetter) and out.reason.startswith(_GAP_REASONS):
            gap_msgs.append(msg)
    if decoder.channels is None or not any(isinstance(o, Record) for o in outcomes):
        raise ConfigError(f"input: no decodable row in {path}")
    partial = {}
    for msg in gap_msgs:
        p = _partial_row(msg, cfg, decoder.channels)
        if p is not None:
            partial[p.row] = p
    return History(str(path), list(decoder.channels), outcomes, partial)


def _partial_row(msg: RawMessage, cfg: DecodeConfig, channels: list[str]) -> PartialRow | None:
    fields: Mapping[str, object]
    if isinstance(msg.value, bytes | bytearray):
        try:
            obj = json.loads(msg.value)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(obj, dict):
            return None
        fields, time_name = obj, cfg.time_field
    else:
        fields = msg.value
        time_name = cfg.csv_time_column if cfg.csv_time_column in fields else cfg.time_field
    try:
        ts_ms = parse_time_ms(fields.get(time_name))
    except DecodeError:
        return None
    raw_key = fields.get(cfg.key_field)
    key = "default" if raw_key is None or raw_key == "" else str(raw_key)
    values = np.array([_maybe_float(fields.get(c)) for c in channels], dtype=np.float64)
    return PartialRow(msg.position.offset, key, ts_ms, values)


def _maybe_float(value: object) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan
