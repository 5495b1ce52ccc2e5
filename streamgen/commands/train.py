"""``streamgen train FILE --model NAME --checkpoint-out CKPT [--epochs N]``.

Offline training of an online model on a recording, through the same engine (windows,
normalization, protection of anomalous windows) as live scoring. Each epoch replays the file
with fresh per-key state and the same model, so later epochs see every window again. The
checkpoint holds the model, optimizer and replay buffer; ``streamgen run --init-from CKPT``
and ``streamgen score --checkpoint-in CKPT`` start from it warm.
"""

from __future__ import annotations

import argparse
import sys
import time

from streamgen.commands.common import (
    add_pipeline_args,
    file_source,
    gc_paused,
    pipeline_from_args,
    process_file,
    progress_bar,
)
from streamgen.errors import ConfigError
from streamgen.models.registry import MODEL_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an online model offline on a recorded stream")
    p.add_argument("input", help="recording: CSV or JSONL (optionally .gz)")
    p.add_argument("--model", choices=MODEL_NAMES, help="model (default: pipeline's)")
    p.add_argument("--checkpoint-out", required=True, metavar="CKPT")
    p.add_argument("--checkpoint-in", metavar="CKPT", help="continue training from here")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_pipeline_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: ``streamgen --help`` and the parser need none of them.
    with gc_paused():
        from streamgen.core import checkpoint
        from streamgen.core.engine import Engine

    if args.epochs < 1:
        raise ConfigError("--epochs: must be >= 1")
    extra = [f"model.name={args.model}"] if args.model else []
    if args.seed is not None:
        extra.append(f"model.seed={args.seed}")
    cfg = pipeline_from_args(args, extra)
    learner = None
    show = sys.stderr.isatty() if args.progress is None else args.progress
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        engine = Engine(cfg)
        if learner is not None:
            engine.learner = learner
        elif args.checkpoint_in:
            checkpoint.load_model_state(engine, checkpoint.load(args.checkpoint_in))
        bar = progress_bar(show, unit=" rows", desc=f"epoch {epoch}")
        n = 0
        losses = []
        source = file_source(engine, args.input)
        for st in process_file(engine, source, cfg.batch.max_records, bar):
            n += st.records
            if st.loss == st.loss:
                losses.append(st.loss)
        bar.close()
        learner = engine.learner
        if learner is None:
            raise ConfigError(f"input: no decodable records in {args.input}")
        mean_loss = sum(losses[-20:]) / max(1, len(losses[-20:]))
        print(f"epoch {epoch}: {n} rows, step {learner.step}, loss {mean_loss:.4f}",
              file=sys.stderr)
    assert learner is not None
    engine.learner = learner
    checkpoint.save_atomic(checkpoint.model_state(engine), args.checkpoint_out)
    print(f"trained {cfg.model.name} for {args.epochs} epochs in "
          f"{time.perf_counter() - t0:.1f}s -> {args.checkpoint_out}", file=sys.stderr)
    return 0
