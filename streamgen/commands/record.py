"""``streamgen record``: a topic → JSONL (optionally .gz), every partition, up to its end.

One line per message, with its position and metadata kept::

    {"topic": "sensors", "partition": 1, "offset": 42, "timestamp_ms": 1700000000123,
     "key": "pump-7", "value": {"ts": 1700000000.1, "pressure": 3.2}}

``value`` holds a message whose body is a JSON object or array; any other body is kept as
``value_text`` (UTF-8) or ``value_b64``; a key that is not UTF-8 as ``key_b64``; a tombstone
has ``"value": null``. ``streamgen replay`` reads these lines back.

The recording stops at the high watermark each partition had at the start (taken from the
first fetch response: ``end_offsets()`` is wrong on some brokers). ``--from/--to`` select by
message timestamp: ``offsets_for_times`` only chooses where to start reading (some brokers
answer 0 for any time), and every message is then filtered by its timestamp, so the result
is right on any broker. ``--resume`` continues an interrupted recording after the last offset
of each partition found in the output.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from streamgen.commands.common import add_pipeline_args, pipeline_from_args
from streamgen.errors import ConfigError, SourceError

_REL = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Give up when a partition below its end delivers nothing for this long (broker gone).
STALL_SECONDS = 60.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a Kafka topic to JSONL (.gz)")
    p.add_argument("--bootstrap", help="broker host:port list (default: the pipeline's)")
    p.add_argument("--topic", required=True, help="topic to record")
    p.add_argument("--output", "-o", required=True, help="output .jsonl or .jsonl.gz")
    p.add_argument("--from", dest="time_from", metavar="TIME",
                   help="first message timestamp: ISO-8601, epoch s/ms, or -15m/-2h/-1d")
    p.add_argument("--to", dest="time_to", metavar="TIME", help="last message timestamp")
    p.add_argument("--resume", action="store_true",
                   help="continue after the last offsets found in OUTPUT")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def parse_time_arg(text: str | None, field: str) -> int | None:
    """``--from``/``--to`` → epoch ms (ISO-8601, epoch s/ms, ``now``, or ``-<n><unit>``)."""
    from streamgen.core.decode import parse_time_ms
    from streamgen.errors import DecodeError

    if text is None:
        return None
    text = text.strip()
    now = int(time.time() * 1000)
    if text == "now":
        return now
    m = _REL.match(text)
    if m:
        return now - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        return parse_time_ms(text)
    except DecodeError as exc:
        raise ConfigError(f"{field}: {exc}") from None


# -- the line format ----------------------------------------------------------------------------


def to_line(topic: str, partition: int, offset: int, timestamp_ms: int | None,
            key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """A consumed message as a recording line (see the module docstring).

    >>> to_line("t", 0, 5, 1000, b"k", b'{"x": 1}')["value"]
    {'x': 1}
    >>> to_line("t", 0, 6, 1000, None, b"oops")["value_text"]
    'oops'
    """
    line: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset,
                            "timestamp_ms": timestamp_ms}
    if key is None:
        line["key"] = None
    else:
        try:
            line["key"] = key.decode("utf-8")
        except UnicodeDecodeError:
            line["key_b64"] = base64.b64encode(key).decode()
    if value is None:
        line["value"] = None
        return line
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        line["value_b64"] = base64.b64encode(value).decode()
        return line
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict | list):
        line["value"] = obj
    else:
        line["value_text"] = text
    return line


def is_recording_line(obj: object) -> bool:
    return (isinstance(obj, dict) and "offset" in obj and "partition" in obj
            and any(k in obj for k in ("value", "value_text", "value_b64")))


def line_key(obj: dict[str, Any]) -> bytes | None:
    if obj.get("key_b64") is not None:
        return base64.b64decode(obj["key_b64"])
    key = obj.get("key")
    return None if key is None else str(key).encode("utf-8")


def line_value(obj: dict[str, Any]) -> bytes | None:
    if "value_b64" in obj:
        return base64.b64decode(obj["value_b64"])
    if "value_text" in obj:
        return str(obj["value_text"]).encode("utf-8")
    value = obj.get("value")
    return None if value is None else json.dumps(value, separators=(",", ":")).encode()


# -- files --------------------------------------------------------------------------------------


def _check_output(path: Path) -> None:
    from streamgen.io.files import file_format

    if file_format(path) != "jsonl":
        raise ConfigError(f"--output: {path}: recordings are JSONL (.jsonl or .jsonl.gz)")


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Complete, parsable lines of a recording (a torn last line or gzip member ends it)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        while True:
            try:
                raw = fh.readline()
            except (EOFError, OSError, gzip.BadGzipFile):
                return
            if not raw:
                return
            if not raw.endswith(b"\n"):
                return  # torn write
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


def _resume_offsets(path: Path, topic: str) -> dict[int, int]:
    """Last recorded offset per partition; rewrites the file without a torn tail."""
    last: dict[int, int] = {}
    good: list[bytes] = []
    for obj in read_lines(path):
        good.append((json.dumps(obj, separators=(",", ":")) + "\n").encode())
        if obj.get("topic") == topic and isinstance(obj.get("offset"), int):
            p = int(obj["partition"])
            last[p] = max(last.get(p, -1), int(obj["offset"]))
    # Rewritten (atomically) with the good lines only, so that appending after a torn line
    # or a truncated gzip member leaves a readable file.
    tmp = path.with_name(f".{path.name}.resume.tmp")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wb") as fh:
        fh.writelines(good)
    os.replace(tmp, path)
    return last


def _open_output(path: Path, append: bool) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "ab" if append else "wb"
    raw = gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)
    return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")


# -- the command --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from streamgen.io.kafka import make_reader, topic_partitions

    cfg = pipeline_from_args(args)
    bootstrap = args.bootstrap or cfg.kafka.bootstrap_servers
    out_path = Path(args.output)
    _check_output(out_path)
    t_from = parse_time_arg(args.time_from, "--from")
    t_to = parse_time_arg(args.time_to, "--to")
    if t_from is not None and t_to is not None and t_from > t_to:
        raise ConfigError("--from: must not be later than --to")
    consumer = make_reader(cfg.kafka.model_copy(update={
        "bootstrap_servers": bootstrap, "client_id": cfg.kafka.client_id + "-record"}))
    try:
        tps = topic_partitions(consumer, args.topic)
        if not tps:
            raise ConfigError(f"--topic: topic {args.topic!r} not found on {bootstrap}")
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        start: dict[Any, int | None] = {tp: None for tp in tps}
        resumed = (_resume_offsets(out_path, args.topic)
                   if args.resume and out_path.exists() else {})
        for tp in tps:
            if tp.partition in resumed:
                start[tp] = resumed[tp.partition] + 1
        if t_from is not None:
            # An optimization only: some brokers answer offset 0 for every time.
            found = consumer.offsets_for_times({tp: t_from for tp in tps})
            for tp, ot in found.items():
                if ot is not None and ot.offset is not None and ot.offset > (start[tp] or 0):
                    start[tp] = ot.offset
        for tp in tps:
            if start[tp] is not None:
                consumer.seek(tp, start[tp])
        show = sys.stderr.isatty() if args.progress is None else args.progress
        fh = _open_output(out_path, append=bool(resumed))
        try:
            n, skipped, secs = _record(consumer, tps, start, fh, t_from, t_to, show, tqdm)
        finally:
            fh.close()
    finally:
        consumer.close()
    print(f"recorded {n:,} messages from {args.topic} ({len(tps)} partitions"
          f"{f', {skipped:,} outside the time range' if skipped else ''}) to {out_path} in "
          f"{secs:.1f}s ({n / max(secs, 1e-9):,.0f} msg/s)", file=sys.stderr)
    return 0


def _record(consumer: Any, tps: list[Any], start: dict[Any, int | None], fh: IO[str],
            t_from: int | None, t_to: int | None, show: bool, tqdm: Any) -> tuple[int, int, float]:
    end: dict[Any, int] = {}
    done: set[Any] = set()
    n = skipped = 0
    bar = tqdm(unit=" msg", disable=not show, file=sys.stderr, desc="recording")
    t0 = last_progress = last_flush = time.monotonic()
    try:
        while len(done) < len(tps):
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for tp in tps:  # the first fetch response of a partition fixes its end
                if tp not in end:
                    high = consumer.highwater(tp)
                    if high is not None:
                        end[tp] = high
                        first = start[tp] if start[tp] is not None else 0
                        bar.total = (bar.total or 0) + max(0, high - first)
                        bar.refresh()
            for tp, records in batch.items():
                for r in records:
                    if tp in done or r.offset >= end.get(tp, 1 << 62):
                        continue
                    bar.update(1)
                    ts = r.timestamp
                    if (t_from is not None and ts < t_from) or (t_to is not None and ts > t_to):
                        skipped += 1
                        continue
                    line = to_line(tp.topic, tp.partition, r.offset, ts, r.key, r.value)
                    fh.write(json.dumps(line, separators=(",", ":")) + "\n")
                    n += 1
                if records:
                    last_progress = time.monotonic()
            for tp in tps:
                if tp in done or tp not in end:
                    continue
                if consumer.position(tp) >= end[tp]:
                    done.add(tp)
                    consumer.pause(tp)
            now = time.monotonic()
            if now - last_flush > 1.0:
                fh.flush()
                last_flush = now
            if now - last_progress > STALL_SECONDS:
                raise SourceError(
                    f"no messages for {STALL_SECONDS:.0f} s with partitions below their end; "
                    "the recording so far is kept (continue it with --resume)")
    finally:
        bar.close()
    return n, skipped, time.monotonic() - t0
