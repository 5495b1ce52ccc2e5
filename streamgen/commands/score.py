"""``streamgen score INPUT --model NAME --output OUT``: the engine over a file.

OUT has exactly one row per input row, in input order, with a finite ``score`` (higher = more
anomalous); a row that went to the dead-letter output keeps its place with an empty score and
the reason in ``error``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from streamgen.commands.common import (
    add_pipeline_args,
    file_source,
    gc_paused,
    pipeline_from_args,
    process_file,
    progress_bar,
    refuse_colliding_paths,
)
from streamgen.errors import ConfigError
from streamgen.models.registry import MODEL_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a CSV/JSONL file (one output row per input row)")
    p.add_argument("input", help="CSV or JSONL file (optionally .gz)")
    p.add_argument("--model", choices=MODEL_NAMES, help="model (default: pipeline's)")
    p.add_argument("--output", "-o", required=True, help="output CSV or JSONL")
    p.add_argument("--continuations", metavar="FILE", help="write continuations here")
    p.add_argument("--dead-letters", metavar="FILE", help="write dead letters here (JSONL)")
    p.add_argument("--checkpoint-in", metavar="CKPT", help="resume from this checkpoint")
    p.add_argument("--checkpoint-out", metavar="CKPT", help="write a checkpoint at the end")
    p.add_argument("--seed", type=int, help="random seed (model.seed)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: ``streamgen --help`` and the parser need none of them.
    with gc_paused():
        from streamgen.core import checkpoint
        from streamgen.core.engine import SCORE_COLUMNS, Engine, Sinks
        from streamgen.core.runtime import freeze_heap
        from streamgen.io.files import FileSink, check_input, file_format

    extra = []
    if args.model:
        extra.append(f"model.name={args.model}")
    if args.seed is not None:
        extra.append(f"model.seed={args.seed}")
    cfg = pipeline_from_args(args, extra)
    if not Path(args.input).is_file():
        raise ConfigError(f"input: file not found: {args.input}")
    refuse_colliding_paths(
        {"input": args.input, "--pipeline": args.pipeline, "--checkpoint-in": args.checkpoint_in},
        {"--output": args.output, "--continuations": args.continuations,
         "--dead-letters": args.dead_letters, "--checkpoint-out": args.checkpoint_out},
    )
    file_format(args.output)
    check_input(args.input)
    if args.checkpoint_out:
        checkpoint.check_writable(args.checkpoint_out)
    sinks = Sinks(scores=FileSink(args.output, SCORE_COLUMNS))
    if args.continuations:
        sinks.continuations = FileSink(args.continuations)
    if args.dead_letters:
        sinks.dead_letters = FileSink(args.dead_letters)
    engine = Engine(cfg, sinks)
    if args.checkpoint_in:
        checkpoint.load_full_state(engine, checkpoint.load(args.checkpoint_in))
    freeze_heap()  # everything built so far lives as long as the loop
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = progress_bar(show, unit=" rows", desc="scoring")
    t0 = time.perf_counter()
    n = dead = anomalies = 0
    source = file_source(engine, args.input)
    try:
        for st in process_file(engine, source, cfg.batch.max_records, bar):
            n += st.records
            dead += st.dead_letters
            anomalies += st.anomalies
        engine.flush_sinks()
        if args.checkpoint_out and engine.learner is not None:
            checkpoint.save_atomic(checkpoint.full_state(engine), args.checkpoint_out)
    finally:
        bar.close()
        for s in sinks.all():
            s.close()
    secs = time.perf_counter() - t0
    print(
        f"scored {n} rows ({dead} dead-lettered, {anomalies} anomalous) with "
        f"{cfg.model.name} in {secs:.1f}s ({n / max(secs, 1e-9):,.0f} rows/s) -> {args.output}",
        file=sys.stderr,
    )
    if source.fault is not None:
        # The rows read before the fault are all in the output; the last row says why the
        # rest could not be read.
        print(f"streamgen: error: {args.input}: {source.fault}", file=sys.stderr)
        return 1
    if n and dead == n:
        # Every row is in the output with its reason, but nothing was scored: say so and
        # exit 1, so that a script does not take an empty run for a clean one.
        hint = " (see the error column" + (f" and {args.dead_letters}" if args.dead_letters
                                           else "") + ")"
        print(f"streamgen: error: no row could be decoded{hint}; check decode.* settings such "
              "as decode.csv_time_column and decode.value_fields", file=sys.stderr)
        return 1
    return 0
