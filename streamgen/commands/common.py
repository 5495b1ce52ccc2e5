"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported where used: the parsers are built without them (start-up time)
    from streamgen.config import PipelineConfig
    from streamgen.core.engine import BatchStats, Engine
    from streamgen.io.files import FileSource


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (for imports, not for work).

    Importing torch makes ~10^5 long-lived objects, and the collections they set off on the
    way cost ~15% of its import time for nothing; the next collection (or ``freeze_heap``)
    sees them as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", metavar="FILE", help="pipeline YAML (defaults when omitted)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a pipeline setting, e.g. --set window.length=64 (repeatable)",
    )


def pipeline_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> PipelineConfig:
    from streamgen.config import load_pipeline

    return load_pipeline(getattr(args, "pipeline", None), list(args.overrides) + (extra or []))


class Bar(Protocol):
    """What the loops use of a progress bar."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


class _NoBar:
    """A hidden bar: what ``tqdm(disable=True)`` does, without importing tqdm."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(show: bool, **kwargs: Any) -> Bar:
    """``tqdm(**kwargs)`` on stderr when ``show``, else a no-op bar (tqdm not imported)."""
    if not show:
        return _NoBar()
    from tqdm import tqdm

    bar: Bar = tqdm(file=sys.stderr, **kwargs)
    return bar


def process_file(
    engine: Engine, source: FileSource, max_records: int, bar: Bar
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
    from streamgen.io.files import FileSource

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
