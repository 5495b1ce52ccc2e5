"""File sources and sinks: CSV and JSONL (optionally gzip-compressed).

A CSV file has a header; a JSONL file has one JSON object per line. Row numbers (0-based,
header excluded) are the ``offset`` of each record's :class:`~streamgen.records.Position`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from streamgen.config import DecodeConfig
from streamgen.core.decode import Decoder
from streamgen.core.ports import RawMessage
from streamgen.errors import ConfigError, SinkError
from streamgen.records import DeadLetter, Position, Record


def file_format(path: str | Path) -> str:
    """``"csv"`` or ``"jsonl"`` from the file name (``.gz`` allowed), else ConfigError."""
    name = str(path).lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ConfigError(f"{path}: unknown file type (use .csv, .jsonl, .ndjson, optionally .gz)")


def _open_text(path: Path, mode: str, newline: str = "") -> IO[str]:
    # surrogateescape: a byte that is not UTF-8 reaches the decoder (and the dead-letter
    # output, byte for byte) instead of stopping the whole file with UnicodeDecodeError.
    # Reading, "utf-8-sig" drops a leading byte-order mark, which would otherwise become part
    # of the first header name (every key "default", no error).
    enc = "utf-8-sig" if mode == "r" else "utf-8"
    if path.suffix == ".gz":
        raw = gzip.open(path, mode + "b")
        return io.TextIOWrapper(raw, encoding=enc, errors="surrogateescape", newline=newline)
    return open(path, mode, encoding=enc, errors="surrogateescape", newline=newline)


def check_input(path: str | Path) -> None:
    """Refuse (ConfigError) a CSV whose header repeats a column name: a row would keep only
    the last of the repeated cells, silently."""
    p = Path(path)
    if file_format(p) != "csv":
        return
    with _open_text(p, "r") as fh:
        header = next(csv.reader(fh), [])
    dups = sorted(h for h, n in Counter(header).items() if n > 1)
    if dups:
        raise ConfigError(f"input: {p}: the header repeats column names {dups}")


def read_raw(path: str | Path) -> Iterator[RawMessage]:
    """Yield every data row of a CSV/JSONL file as a :class:`RawMessage`, in file order."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"input: file not found: {p}")
    fmt = file_format(p)
    topic = p.name
    # JSONL records end at "\n" only: a carriage return inside a line is data (it would
    # otherwise split one record into two dead letters); a trailing one is stripped.
    with _open_text(p, "r", "" if fmt == "csv" else "\n") as fh:
        if fmt == "csv":
            reader = csv.DictReader(fh)
            for i, row in enumerate(reader):
                yield RawMessage(value=row, position=Position(topic, -1, i))
        else:
            for i, line in enumerate(fh):
                data = line.rstrip("\r\n").encode("utf-8", errors="surrogateescape")
                yield RawMessage(value=data, position=Position(topic, -1, i))


def read_records(path: str | Path, decode: DecodeConfig) -> Iterator[Record | DeadLetter]:
    """Decode every row of a file: a :class:`Record`, or a :class:`DeadLetter` with a reason."""
    decoder = Decoder(decode)
    for msg in read_raw(path):
        yield decoder.decode(msg)


class FileSource:
    """A finite :class:`~streamgen.core.ports.Source` over a CSV/JSONL file."""

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._it = read_raw(self.path)
        self._done = False

    def poll(self, max_records: int, timeout_ms: int = 0) -> list[RawMessage]:
        out: list[RawMessage] = []
        for msg in self._it:
            out.append(msg)
            if len(out) >= max_records:
                break
        else:
            self._done = True
        return out

    def exhausted(self) -> bool:
        return self._done

    def close(self) -> None:
        self._done = True


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


class FileSink:
    """Writes rows to CSV or JSONL by extension. CSV columns are fixed by ``columns``."""

    def __init__(self, path: str | Path, columns: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.format = file_format(self.path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = _open_text(self.path, "w")
        except OSError as exc:
            raise ConfigError(f"output: cannot write {self.path}: {exc.strerror}") from None
        self.columns = list(columns) if columns is not None else None
        self._writer: csv.DictWriter[str] | None = None
        self.rows = 0

    def add(self, row: Mapping[str, object]) -> None:
        try:
            if self.format == "jsonl":
                self._fh.write(json.dumps(row, default=_json_default) + "\n")
            else:
                if self._writer is None:
                    cols = self.columns or list(row.keys())
                    self._writer = csv.DictWriter(self._fh, fieldnames=cols, extrasaction="ignore")
                    self._writer.writeheader()
                self._writer.writerow({k: _cell(v) for k, v in row.items()})
        except OSError as exc:
            raise SinkError(f"{self.path}: {exc.strerror}") from exc
        self.rows += 1

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as exc:
            raise SinkError(f"{self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        if self.format == "csv" and self._writer is None and self.columns:
            csv.DictWriter(self._fh, fieldnames=self.columns).writeheader()
        self._fh.close()


def _json_default(obj: object) -> object:
    if isinstance(obj, np.bool_):
        return bool(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class ListSink:
    """Keeps rows in memory (tests, small runs)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self.flushes = 0

    def add(self, row: Mapping[str, object]) -> None:
        self.rows.append(dict(row))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass
