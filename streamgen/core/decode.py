"""Raw message → :class:`~streamgen.records.Record`, or a dead letter with a reason.

The record contract (docs/architecture.md, "Record and output contracts"):

* **key**: the Kafka message key, else field ``decode.key_field``, else ``"default"``.
* **time**: field ``decode.time_field`` (JSON) or column ``decode.csv_time_column`` (CSV);
  ISO-8601 text, or epoch seconds / milliseconds (numbers ≥ 1e11 are taken as ms).
* **values**: the fields named in ``decode.value_fields``, else every numeric field other than
  key, time and label, fixed by the first good record.

Examples
--------
>>> from streamgen.config import DecodeConfig
>>> from streamgen.core.ports import RawMessage
>>> from streamgen.records import Position
>>> d = Decoder(DecodeConfig())
>>> r = d.decode(RawMessage(b'{"key": "a", "ts": 1700000000, "x": 1.5}', Position("t", 0, 7)))
>>> r.key, r.ts_ms, r.values.tolist()
('a', 1700000000000, [1.5])
>>> d.decode(RawMessage(b'{"ts": 1700000001, "x": "oops"}', Position("t", 0, 8))).reason
'non-numeric value in field x'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from streamgen.config import DecodeConfig
from streamgen.core.ports import RawMessage, Unreadable
from streamgen.errors import DecodeError
from streamgen.records import DeadLetter, Record

# Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_CUTOFF = 1e11


# JSON text -> (value, end index): json.loads without its encoding detection and its two
# whitespace-skipping regular expressions.
_raw_decode = json.JSONDecoder().raw_decode

# Times the output can print as ISO-8601: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z.
_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_999


def parse_time_ms(value: object) -> int:
    """Parse ISO-8601 text or epoch seconds/ms into integer ms since the epoch (UTC)."""
    if isinstance(value, bool) or value is None:
        raise DecodeError("missing or invalid time")
    if isinstance(value, int | float):
        try:
            num = float(value)
        except OverflowError:  # an integer beyond float range
            raise DecodeError("time out of range (years 1 to 9999)") from None
    else:
        text = str(value).strip()
        if not text:
            raise DecodeError("missing time")
        try:
            num = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
            except ValueError:
                raise DecodeError(f"unparsable time {text[:40]!r}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return _in_range(dt.timestamp() * 1000.0)
    if not math.isfinite(num):
        raise DecodeError("non-finite time")
    return _in_range(num if abs(num) >= _MS_CUTOFF else num * 1000.0)


def _in_range(ms: float) -> int:
    if not _MIN_MS <= ms <= _MAX_MS:
        raise DecodeError("time out of range (years 1 to 9999)")
    return int(round(ms))


def _to_float(value: object, name: str) -> float:
    if isinstance(value, bool) or value is None:
        raise DecodeError(f"non-numeric value in field {name}")
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:  # an integer beyond float range
            raise DecodeError("value magnitude exceeds 1e30") from None
    else:
        text = str(value).strip()
        if not text:
            raise DecodeError(f"missing value in field {name}")
        try:
            v = float(text)
        except ValueError:
            raise DecodeError(f"non-numeric value in field {name}") from None
    if not math.isfinite(v):
        raise DecodeError(f"non-finite value in field {name}")
    return v


def is_numeric(value: object) -> bool:
    """Whether a field value counts as a numeric channel when channels are inferred."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


class Decoder:
    """Decodes raw messages; remembers the channel names fixed by the first good record."""

    def __init__(self, cfg: DecodeConfig, channels: list[str] | None = None) -> None:
        self.cfg = cfg
        self.channels: list[str] | None = list(cfg.value_fields or channels or []) or None
        self.max_ts_ms: int | None = None  # newest event time accepted (skew check)
        self._reserved = {cfg.key_field, cfg.time_field, cfg.csv_time_column}
        if cfg.label_field:
            self._reserved.add(cfg.label_field)

    def decode(self, msg: RawMessage) -> Record | DeadLetter:
        """Return a :class:`Record`, or a :class:`DeadLetter` whose ``reason`` says why."""
        if self.channels is not None:
            rec = self._decode_plain(msg)
            if rec is not None:
                return rec
        try:
            return self._decode(msg)
        except DecodeError as exc:
            key = None if msg.key is None else kafka_key(msg.key)
            return DeadLetter(raw=_raw_bytes(msg.value), position=msg.position, reason=str(exc),
                              key=key)

    def _decode_plain(self, msg: RawMessage) -> Record | None:
        """:meth:`_decode` of the common record in under half its time, once the channels
        are known: a UTF-8 JSON object, or a CSV row, whose time is a number (or numeric
        text) and whose values are numbers or numeric text. Anything else (or anything
        wrong) returns None, and :meth:`_decode` decides, with its reasons; what this
        returns is what :meth:`_decode` would have.

        Per record, :meth:`_decode`'s generic steps (encoding detection, a copy to strip
        whitespace, a numpy write per value and a numpy reduction, a call per field) cost
        twice the JSON parsing itself.
        """
        cfg, raw = self.cfg, msg.value
        assert self.channels is not None
        fields: dict[str, object]
        if type(raw) is bytes:
            if len(raw) > cfg.max_record_bytes or raw[:1] != b"{" or raw[-1:] != b"}":
                return None
            try:
                text = raw.decode()
                fields, end = _raw_decode(text)
            except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                return None
            if end != len(text) or type(fields) is not dict:
                return None
            t = fields.get(cfg.time_field)
        elif type(raw) is dict:  # a CSV row (text cells)
            fields = raw
            if None in fields:  # surplus cells
                return None
            t = fields.get(cfg.csv_time_column if cfg.csv_time_column in fields
                           else cfg.time_field)
        else:
            return None
        if msg.key is not None:
            key = kafka_key(msg.key)
        else:
            raw_key = fields.get(cfg.key_field)
            if raw_key is None or raw_key == "":
                key = "default"
            elif type(raw_key) is str:
                key = raw_key
            else:
                return None
        if len(key) > 512:
            return None
        vals = []
        label = None
        try:  # float() of an integer beyond float range raises OverflowError
            # parse_time_ms's arithmetic; NaN and infinities fail the range test. Text that
            # is no number (ISO-8601 time, a bad value) raises ValueError: the generic path.
            if type(t) is not int and type(t) is not float and type(t) is not str:
                return None
            num = float(t)  # type: ignore[arg-type]
            ms = num if abs(num) >= _MS_CUTOFF else num * 1000.0
            if not _MIN_MS <= ms <= _MAX_MS:
                return None
            ts_ms = int(round(ms))
            if cfg.max_time_skew_ms and self.max_ts_ms is not None:
                if abs(ts_ms - self.max_ts_ms) > cfg.max_time_skew_ms:
                    return None
            for name in self.channels:
                v = fields.get(name)
                if type(v) is not float and type(v) is not int and type(v) is not str:
                    return None
                v = float(v)  # type: ignore[arg-type]
                if not -1e30 <= v <= 1e30:  # also false for NaN
                    return None
                vals.append(v)
            if cfg.label_field:
                raw_label = fields.get(cfg.label_field)
                if raw_label is not None and raw_label != "":
                    if (type(raw_label) is not int and type(raw_label) is not float
                            and type(raw_label) is not str):
                        return None
                    label = int(float(raw_label))  # type: ignore[arg-type]
        except (ValueError, OverflowError):  # ValueError: no number, or a NaN label
            return None
        if self.max_ts_ms is None or ts_ms > self.max_ts_ms:
            self.max_ts_ms = ts_ms
        values = np.array(vals, dtype=np.float64)
        return Record(key=key, ts_ms=ts_ms, values=values, position=msg.position, label=label)

    def _decode(self, msg: RawMessage) -> Record:
        cfg = self.cfg
        fields: Mapping[str, object]
        if isinstance(msg.value, Unreadable):
            raise DecodeError(msg.value.reason)
        if isinstance(msg.value, bytes | bytearray):
            if len(msg.value) > cfg.max_record_bytes:
                raise DecodeError(f"record of {len(msg.value)} bytes exceeds max_record_bytes")
            if not msg.value.strip():
                raise DecodeError("empty record")
            try:
                obj = json.loads(msg.value)
            except (ValueError, UnicodeDecodeError):
                raise DecodeError("not valid JSON") from None
            if not isinstance(obj, dict):
                raise DecodeError("JSON record is not an object")
            fields = obj
            time_name = cfg.time_field
        else:
            fields = msg.value
            if None in fields:  # csv.DictReader puts surplus cells under the key None
                raise DecodeError("row has more cells than the header")
            time_name = cfg.csv_time_column if cfg.csv_time_column in fields else cfg.time_field
        if msg.key is not None:
            key = kafka_key(msg.key)
        else:
            raw_key = fields.get(cfg.key_field)
            if isinstance(raw_key, dict | list):
                # Its Python repr would become the key: unstable, and not what was meant.
                raise DecodeError(f"key field {cfg.key_field} holds an object or a list")
            key = "default" if raw_key is None or raw_key == "" else str(raw_key)
        if len(key) > 512:
            raise DecodeError("key longer than 512 characters")
        if time_name not in fields:
            if isinstance(msg.value, dict):  # a CSV row: name the column setting too
                raise DecodeError(
                    f"missing time column {cfg.csv_time_column} (decode.csv_time_column)"
                )
            raise DecodeError(f"missing time field {time_name}")
        ts_ms = parse_time_ms(fields[time_name])
        if cfg.max_time_skew_ms and self.max_ts_ms is not None:
            if abs(ts_ms - self.max_ts_ms) > cfg.max_time_skew_ms:
                raise DecodeError("time skew: further than max_time_skew_ms from the stream")
        channels = self.channels
        if channels is None:
            channels = [k for k, v in fields.items() if k not in self._reserved and is_numeric(v)]
            if not channels:
                raise DecodeError("no numeric value fields")
            if len(channels) > cfg.max_channels:
                raise DecodeError(f"{len(channels)} value fields exceed max_channels")
        values = np.empty(len(channels), dtype=np.float64)
        for i, name in enumerate(channels):
            if name not in fields:
                raise DecodeError(f"missing value field {name} (expected {len(channels)})")
            values[i] = _to_float(fields[name], name)
        if abs(values).max() > 1e30:
            raise DecodeError("value magnitude exceeds 1e30")
        label = None
        if cfg.label_field and cfg.label_field in fields:
            raw_label = fields[cfg.label_field]
            if raw_label not in (None, ""):
                try:
                    label = int(float(raw_label))  # type: ignore[arg-type]
                except (TypeError, ValueError, OverflowError):  # OverflowError: inf
                    raise DecodeError(f"invalid label in field {cfg.label_field}") from None
        # Only a record that decoded completely may fix the channel names.
        self.channels = channels
        if self.max_ts_ms is None or ts_ms > self.max_ts_ms:
            self.max_ts_ms = ts_ms
        return Record(key=key, ts_ms=ts_ms, values=values, position=msg.position, label=label)


def kafka_key(raw: bytes) -> str:
    """A Kafka message key as text: UTF-8, with any other byte as a backslash escape, so that
    keys that differ in bytes stay different series (a replacement character merged them)."""
    return raw.decode("utf-8", errors="backslashreplace")


def _raw_bytes(value: bytes | Mapping[str, str] | Unreadable) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Unreadable):
        return value.raw
    cells = {str(k): v for k, v in value.items()}
    return json.dumps(cells, default=str).encode()
