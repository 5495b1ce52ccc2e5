"""``streamgen replay FILE``: a recording or a data file → a topic, keys preserved.

FILE is either a recording made by ``streamgen record`` (each message's key and body are sent
as recorded) or a data file, CSV or JSONL (optionally .gz), whose rows become JSON messages
keyed by the pipeline's ``decode.key_field`` (a CSV time column is renamed to
``decode.time_field``, so the consumer decodes it like any JSON record). A JSONL line that is
not JSON is sent as is (the consumer dead-letters it, as it would live).

Pace: ``--speed X`` replays at X times the recorded pace (message timestamps of a recording,
the time field of a data file); ``--as-fast-as-possible`` does not wait at all.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamgen.commands.common import add_pipeline_args, pipeline_from_args
from streamgen.errors import ConfigError, SourceError

if TYPE_CHECKING:  # the parser is built without it (start-up time)
    from streamgen.config import DecodeConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay a recording or data file into a Kafka topic")
    p.add_argument("input", help="recording (.jsonl[.gz] from `streamgen record`), or CSV/JSONL")
    p.add_argument("--bootstrap", help="broker host:port list (default: the pipeline's)")
    p.add_argument("--topic", help="target topic (default: the pipeline's only input topic)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None,
                      help="multiple of the recorded pace (default 1.0)")
    pace.add_argument("--as-fast-as-possible", action="store_true", help="do not wait")
    p.add_argument("--keep-partitions", action="store_true",
                   help="send each recorded message to its recorded partition")
    p.add_argument("--keep-timestamps", action="store_true",
                   help="give messages their recorded timestamps (default: now)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def iter_messages(path: Path, decode: DecodeConfig) -> Iterator[tuple[
        bytes | None, bytes | None, int | None, int | None]]:
    """``(key, value, timestamp_ms, partition)`` for every line/row of ``path``."""
    from streamgen.commands.record import is_recording_line, line_key, line_value
    from streamgen.core.decode import parse_time_ms
    from streamgen.errors import DecodeError
    from streamgen.io.files import file_format

    def event_ms(row: dict[str, Any]) -> int | None:
        try:
            return parse_time_ms(row.get(decode.time_field))
        except DecodeError:
            return None

    def key_of(row: dict[str, Any]) -> bytes | None:
        k = row.get(decode.key_field)
        return None if k is None or k == "" else str(k).encode("utf-8")

    fmt = file_format(path)
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    with io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        if fmt == "csv":
            for raw_row in csv.DictReader(fh):
                row: dict[str, Any] = {k: _number(v) if isinstance(v, str) else v
                                       for k, v in raw_row.items() if k is not None}
                if decode.csv_time_column in row and decode.time_field not in row:
                    row[decode.time_field] = row.pop(decode.csv_time_column)
                yield key_of(row), json.dumps(row).encode(), event_ms(row), None
            return
        for line in fh:
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                yield None, text.encode("utf-8", errors="surrogateescape"), None, None
                continue
            if is_recording_line(obj):
                ts = obj.get("timestamp_ms")
                part = obj.get("partition")
                yield (line_key(obj), line_value(obj), int(ts) if isinstance(ts, int) else None,
                       int(part) if isinstance(part, int) else None)
            elif isinstance(obj, dict):
                yield key_of(obj), text.encode("utf-8"), event_ms(obj), None
            else:
                yield None, text.encode("utf-8"), None, None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from streamgen.errors import SinkError
    from streamgen.io.producers import Tracker, make_producer

    cfg = pipeline_from_args(args)
    path = Path(args.input)
    if not path.is_file():
        raise ConfigError(f"input: file not found: {path}")
    topic = args.topic
    if topic is None:
        if len(cfg.kafka.topics) != 1:
            raise ConfigError("--topic: required (the pipeline has no single input topic)")
        topic = cfg.kafka.topics[0]
    speed = None if args.as_fast_as_possible else (args.speed if args.speed is not None else 1.0)
    if speed is not None and speed <= 0:
        raise ConfigError("--speed: must be positive")
    bootstrap = args.bootstrap or cfg.kafka.bootstrap_servers
    kafka_cfg = cfg.kafka.model_copy(update={"bootstrap_servers": bootstrap,
                                             "client_id": cfg.kafka.client_id + "-replay"})
    producer = make_producer(kafka_cfg, defaults={"linger_ms": 20, "bootstrap_timeout_ms": 10_000},
                             quiet=True)
    tracker = Tracker()
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = tqdm(unit=" msg", disable=not show, file=sys.stderr, desc=f"replay → {topic}")
    n = 0
    t0 = time.monotonic()
    first_ts: int | None = None
    try:
        for key, value, ts, part in iter_messages(path, cfg.decode):
            if speed is not None and ts is not None:
                if first_ts is None:
                    first_ts, t0 = ts, time.monotonic()
                delay = t0 + (ts - first_ts) / 1000.0 / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(
                topic, value, key,
                partition=part if args.keep_partitions else None,
                timestamp_ms=ts if args.keep_timestamps else None, tracker=tracker,
            )
            n += 1
            bar.update(1)
        if not producer.flush(120):
            raise SourceError(f"replay to {topic}: {tracker.outstanding()} messages not "
                              "acknowledged within 120 s")
    except SinkError as exc:
        raise SourceError(f"replay to {topic} failed after {n} messages: {exc}") from exc
    finally:
        bar.close()
        producer.close(timeout=10)
    secs = time.monotonic() - t0
    print(f"replayed {n:,} messages from {path} to {topic} in {secs:.1f}s "
          f"({n / max(secs, 1e-9):,.0f} msg/s)", file=sys.stderr)
    failed = tracker.failed
    if failed:
        print(f"streamgen: {len(failed)} messages failed, first: {failed[0]!r}", file=sys.stderr)
        return 1
    return 0
