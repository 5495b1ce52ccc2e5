"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from streamgen.config import PipelineConfig, load_pipeline
from streamgen.core.engine import BatchStats, Engine
from streamgen.io.files import FileSource


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", metavar="FILE", help="pipeline YAML (defaults when omitted)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a pipeline setting, e.g. --set window.length=64 (repeatable)",
    )


def pipeline_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> PipelineConfig:
    return load_pipeline(getattr(args, "pipeline", None), list(args.overrides) + (extra or []))


def process_file(
    engine: Engine, source: FileSource, max_records: int, bar: tqdm
) -> Iterator[BatchStats]:
    """Run ``engine`` over a CSV/JSONL file source in micro-batches, yielding each batch's
    stats; the last item is the release of records held by the reorder gate."""
    while not source.exhausted():
        msgs = source.poll(max_records)
        if not msgs:
            break
        yield engine.process(msgs)
        bar.update(len(msgs))
    yield engine.flush_held()


def file_source(engine: Engine, path: str | Path) -> FileSource:
    """A file source for ``engine`` (records bounded by its ``decode.max_record_bytes``)."""
    return FileSource(path, engine.cfg.decode.max_record_bytes)


def refuse_colliding_paths(inputs: dict[str, str | None], outputs: dict[str, str | None]) -> None:
    """Exit 2 (ConfigError) before anything is written when an output would overwrite an
    input, or two outputs are the same file (``{flag: path}``; None = not given)."""
    import os

    from streamgen.errors import ConfigError

    def same(a: str, b: str) -> bool:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        try:
            return os.path.samefile(a, b)  # hard links, other spellings of one file
        except OSError:
            return False

    outs = [(f, p) for f, p in outputs.items() if p]
    for flag, path in outs:
        for iflag, ipath in inputs.items():
            if ipath and same(path, ipath):
                raise ConfigError(f"{flag}: {path} is the {iflag} file; it would be overwritten")
    for i, (flag, path) in enumerate(outs):
        for other, opath in outs[i + 1 :]:
            if same(path, opath):
                raise ConfigError(f"{flag}: {path} is also given as {other}")
