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
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from streamgen.core.jsonsafe import json_safe
from streamgen.core.ports import RawMessage, Unreadable
from streamgen.errors import ConfigError, SinkError
from streamgen.records import Position


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
    try:
        with _open_text(p, "r") as fh:
            header = next(csv.reader(fh), [])
    except (EOFError, OSError, zlib.error, csv.Error):
        return  # the reader reports an unreadable file row by row, with its reason
    dups = sorted(h for h, n in Counter(header).items() if n > 1)
    if dups:
        raise ConfigError(f"input: {p}: the header repeats column names {dups}")


# A quoted CSV field may span lines; one that is still open after this many lines (or after
# max_record_bytes) is taken as an unterminated quote: its first line is dead-lettered and
# reading resumes at the next line, instead of the quote swallowing the rest of the file.
MAX_CSV_RECORD_LINES = 64


def sniff_format(path: str | Path) -> str:
    """:func:`file_format`, or for a name without a known suffix, ``"jsonl"`` when the file's
    first non-blank character is ``{`` and ``"csv"`` otherwise."""
    try:
        return file_format(path)
    except ConfigError:
        pass
    try:
        with _open_text(Path(path), "r") as fh:
            head = fh.read(256)
    except (EOFError, OSError, zlib.error):
        return "csv"  # the reader reports why it cannot read it
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def read_raw(
    path: str | Path, max_record_bytes: int = 1_000_000, fmt: str | None = None
) -> Iterator[RawMessage]:
    """Yield every data record of a CSV/JSONL file as a :class:`RawMessage`, in file order.

    ``fmt`` (``"csv"`` or ``"jsonl"``) overrides the format the file name implies.

    Nothing read is lost to a framing fault: a CSV line that cannot be parsed (an
    unterminated quote, a record over ``max_record_bytes``) and the rest of a truncated or
    corrupt compressed file come as :class:`~streamgen.core.ports.Unreadable` messages, which
    the decoder dead-letters with the reason.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"input: file not found: {p}")
    fmt = fmt or file_format(p)
    topic = p.name
    i = 0
    # JSONL records end at "\n" only: a carriage return inside a line is data (it would
    # otherwise split one record into two dead letters); a trailing one is stripped.
    with _open_text(p, "r", "" if fmt == "csv" else "\n") as fh:
        lines = _lines(fh)
        try:
            if fmt == "csv":
                for value in _csv_records(lines, max_record_bytes):
                    yield RawMessage(value=value, position=Position(topic, -1, i))
                    i += 1
            else:
                for line in lines:
                    data = line.rstrip("\r\n").encode("utf-8", errors="surrogateescape")
                    yield RawMessage(value=data, position=Position(topic, -1, i))
                    i += 1
        except _Truncated as exc:
            value = Unreadable(b"", str(exc), final=True)
            yield RawMessage(value=value, position=Position(topic, -1, i))


class _Truncated(Exception):
    """The compressed input ended early or is corrupt after some records."""


def _lines(fh: IO[str]) -> Iterator[str]:
    try:
        yield from fh
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise _Truncated(f"input truncated or corrupt after this point: {exc}") from None


def _parse_csv(text: str) -> list[str] | None:
    """One CSV record's cells; None while a quoted field is still open."""
    if '"' not in text:
        return next(csv.reader((text,)), [])
    try:
        return next(csv.reader(io.StringIO(text), strict=True), [])
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return None
        # Complete but irregular quoting ('a,"b"c'): read leniently, as csv does by default.
        return next(csv.reader(io.StringIO(text)), [])


def _csv_records(
    lines: Iterator[str], max_bytes: int
) -> Iterator[dict[str | None, str | None] | Unreadable]:
    """Rows of a CSV file as ``csv.DictReader`` gives them (surplus cells under ``None``,
    missing ones ``None``), or :class:`Unreadable` for a line that cannot be one."""
    # The field size limit is csv's own safety net against runaway quotes; records are
    # bounded here instead, by max_bytes, with a reason.
    csv.field_size_limit(max(csv.field_size_limit(), max_bytes + 1))
    pending: list[str] = []
    header: list[str] | None = None
    queue: list[str] = []  # lines to read again after an unterminated quote
    while True:
        if queue:
            line = queue.pop(0)
        else:
            line = next(lines, None)
            if line is None:
                break
        pending.append(line)
        text = "".join(pending)
        if len(text) > max_bytes and len(pending) == 1:
            pending = []
            yield Unreadable(text.encode("utf-8", errors="surrogateescape"),
                             f"record of {len(text)} bytes exceeds max_record_bytes")
            continue
        cells = _parse_csv(text)
        if cells is None:
            if len(pending) < MAX_CSV_RECORD_LINES and len(text) <= max_bytes:
                continue
            first, queue = pending[0], pending[1:] + queue
            pending = []
            yield Unreadable(first.encode("utf-8", errors="surrogateescape"),
                             "malformed CSV: a quoted field is never closed")
            continue
        pending = []
        if header is None:
            header = cells
            continue
        if not cells:
            continue  # a blank line, as csv.DictReader skips it
        row: dict[str | None, str | None] = dict(zip(header, cells, strict=False))
        if len(cells) > len(header):
            row[None] = cells[len(header) :]  # type: ignore[assignment]
        for name in header[len(cells) :]:
            row[name] = None
        yield row
    if pending:  # the file ended inside a quoted field
        text = "".join(pending)
        if header is None:
            return
        yield Unreadable(text.encode("utf-8", errors="surrogateescape"),
                         "malformed CSV: the file ends inside a quoted field")


def read_table(path: str | Path) -> tuple[list[str], list[dict[str, Any]], bool]:
    """A whole CSV/JSONL(.gz) file as rows, strictly: ``(columns, rows, is_jsonl)``.

    For files that are tables rather than streams (scores, labels, continuations): a row
    that cannot be read is a :class:`~streamgen.errors.ConfigError` naming its line, not a
    dead letter. CSV cells stay text (header names and blank rows trimmed), JSONL values
    keep their JSON types; blank lines are skipped. Unknown suffixes are sniffed
    (:func:`sniff_format`).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"cannot read {p}: no such file")
    fmt = sniff_format(p)
    columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    for msg in read_raw(p, fmt=fmt):
        value, n = msg.value, msg.position.offset + 1
        if isinstance(value, Unreadable):
            raise ConfigError(f"{p.name} {'line' if fmt == 'jsonl' else 'row'} {n}: "
                              f"{value.reason}")
        if isinstance(value, bytes):
            if not value.strip():
                continue
            try:
                obj = json.loads(value)
            except ValueError:  # UnicodeDecodeError too
                raise ConfigError(f"{p.name} line {n} is not valid JSON") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{p.name} line {n} is not a JSON object")
        else:
            if not columns:
                columns.update(dict.fromkeys(k.strip() for k in value if k is not None))
            if not any(isinstance(v, str) and v.strip() for v in value.values()):
                continue
            obj = {k.strip(): v for k, v in value.items() if k is not None}
        columns.update(dict.fromkeys(obj))
        rows.append(obj)
    return list(columns), rows, fmt == "jsonl"


class FileSource:
    """A finite :class:`~streamgen.core.ports.Source` over a CSV/JSONL file."""

    name = "file"

    def __init__(self, path: str | Path, max_record_bytes: int = 1_000_000) -> None:
        self.path = Path(path)
        self._it = read_raw(self.path, max_record_bytes)
        self._done = False
        #: Why the file could not be read to its end (a truncated or corrupt compressed
        #: file), once that happened; the records before it were delivered.
        self.fault: str | None = None

    def poll(self, max_records: int, timeout_ms: int = 0) -> list[RawMessage]:
        out: list[RawMessage] = []
        for msg in self._it:
            out.append(msg)
            if isinstance(msg.value, Unreadable) and msg.value.final:
                self.fault = msg.value.reason
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


def _finite(value: float) -> str:
    return repr(value) if math.isfinite(value) else ""


# _cell by exact type for the types score rows hold (None: written as is; the csv module
# writes None as an empty cell): one dict look-up per cell instead of a chain of
# isinstance checks (11 -> 5 us per 16-column row).
_CELL_BY_TYPE: dict[type, Any] = {
    str: None, int: None, type(None): None, float: _finite,
    bool: lambda v: "true" if v else "false",
}


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
        self._writer: Any = None  # a csv writer, once the columns are known
        self.rows = 0

    def add(self, row: Mapping[str, object]) -> None:
        try:
            if self.format == "jsonl":
                try:
                    text = json.dumps(row, default=_json_default, allow_nan=False)
                except ValueError:  # a non-finite float: null, as strict JSON has it
                    text = json.dumps(json_safe(row), default=_json_default)
                self._fh.write(text + "\n")
            else:
                if self._writer is None:
                    self.columns = self.columns or list(row.keys())
                    self._writer = csv.writer(self._fh)
                    self._writer.writerow(self.columns)
                cells = []
                fmt_of = _CELL_BY_TYPE.get
                for k in self.columns or ():  # a row's missing columns are empty, extras ignored
                    v = row.get(k)
                    fmt = fmt_of(type(v), _cell)
                    cells.append(v if fmt is None else fmt(v))
                self._writer.writerow(cells)
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
