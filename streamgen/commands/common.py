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
    engine: Engine, path: str | Path, max_records: int, bar: tqdm
) -> Iterator[BatchStats]:
    """Run ``engine`` over a CSV/JSONL file in micro-batches, yielding each batch's stats;
    the last item is the release of records held by the reorder gate."""
    source = FileSource(path)
    while not source.exhausted():
        msgs = source.poll(max_records)
        if not msgs:
            break
        yield engine.process(msgs)
        bar.update(len(msgs))
    yield engine.flush_held()
