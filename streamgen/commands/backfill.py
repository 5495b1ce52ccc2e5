"""Subcommands ``backfill`` and ``evaluate-generated``; ``register(subparsers)`` wires them.

::

    streamgen backfill INPUT --model gan|vae --output-dir DIR [--pipeline FILE] [--set K=V]
        [--epochs N] [--steps-per-epoch N] [--checkpoint-in CKPT] [--checkpoint-out CKPT]
        [--max-seconds S] [--[no-]progress] [--vae-sample residual|mean|noise]
    streamgen evaluate-generated --backfill DIR [--real FILE] [--output-dir DIR]
    streamgen evaluate-generated --real FILE|sines --synthetic FILE [--output-dir DIR]
    streamgen evaluate-generated --model gan|vae --input FILE|sines [--epochs N] [--output-dir DIR]

``backfill`` scales with ``torchrun --nproc_per_node=N -m streamgen backfill ...`` (DDP).
Bad arguments raise :class:`~streamgen.errors.ConfigError` (exit 2, one line naming the field).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from streamgen.batch.kinds import DEFAULT_EPOCHS, DEFAULT_PATIENCE, MODEL_KINDS, VAE_SAMPLE_MODES
from streamgen.errors import ConfigError

if TYPE_CHECKING:
    from streamgen.batch.train import TrainConfig
    from streamgen.config import ModelConfig


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="total epochs (default 100 for gan, 30 for vae; "
                   "with --checkpoint-in: the checkpoint's, i.e. no further training)")  # fmt: skip
    p.add_argument("--steps-per-epoch", type=int, metavar="N",
                   help="batches per epoch, drawn at random (default: a full pass capped at "
                   "60 for vae, 30 for gan; 0: a full pass over every window)")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="windows per step (default model.train_batch)")
    p.add_argument("--lr", type=float, help="learning rate (default model.lr)")
    p.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience in epochs (default 10 for vae, 100 for gan: "
                   "with its default epochs it never stops early)")
    p.add_argument("--max-seconds", type=float,
                   help="stop training after this much time (checked after every step)")  # fmt: skip
    p.add_argument("--seed", type=int, help="random seed (default model.seed)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default model.device)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr (default on: bars on a terminal, else a plain line "
                   "every few seconds)")  # fmt: skip
    p.add_argument("--vae-sample", choices=VAE_SAMPLE_MODES, default="residual",
                   help="how the VAE draws synthetic windows: residual (default: decoder mean "
                   "plus the residual of a random training window), mean (decoder mean "
                   "alone), noise (plus its per-point Gaussian noise); the GAN ignores it")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backfill`` and ``evaluate-generated`` to the ``streamgen`` parser."""
    p = sub.add_parser("backfill", help="train a GAN/VAE on history; score, impute, sample it")
    p.add_argument("input", help="CSV or JSONL history (optionally .gz)")
    p.add_argument("--model", required=True, choices=MODEL_KINDS)
    p.add_argument("--output-dir", required=True, type=Path, metavar="DIR")
    p.add_argument("--pipeline", metavar="FILE", help="pipeline YAML (defaults when omitted)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline setting, e.g. --set window.length=24")  # fmt: skip
    p.add_argument("--checkpoint-in", type=Path, metavar="CKPT", help="resume / reuse a model")
    p.add_argument("--checkpoint-out", type=Path, metavar="CKPT",
                   help="checkpoint written every epoch (default DIR/checkpoint.pt)")  # fmt: skip
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out tail per key")
    p.add_argument("--synthetic", type=int, default=256, help="windows to sample")
    p.add_argument("--max-gap-points", type=int, default=64, help="longest gap to fill")
    _train_args(p)
    p.set_defaults(func=run_backfill)

    q = sub.add_parser("evaluate-generated", help="quality of generated windows (TimeGAN metrics)")
    q.add_argument("--backfill", type=Path, metavar="DIR",
                   help="a backfill output folder: its synthetic.csv against the history it was "
                   "trained on, windows of its length (report.json)")  # fmt: skip
    q.add_argument("--real", help="real data: CSV/JSONL history, a synthetic.csv, or 'sines' "
                   "(default with --backfill: the history backfill read)")  # fmt: skip
    q.add_argument("--synthetic", help="generated windows (synthetic.csv from backfill)")
    q.add_argument("--model", choices=MODEL_KINDS, help="train this model and sample from it")
    q.add_argument("--input", help="training data for --model: CSV/JSONL or 'sines'")
    q.add_argument("--output-dir", type=Path, metavar="DIR", help="write quality.json + pca.png")
    q.add_argument("--n", type=int, default=10000,
                   help="sines: number of sequences (TimeGAN's 10,000)")  # fmt: skip
    q.add_argument("--seq-len", type=int, default=None,
                   help="window length (default: the synthetic windows' length, else 24)")
    q.add_argument("--iterations", type=int, default=2000, help="post-hoc model iterations")
    q.add_argument("--repeats", type=int, default=1, help="average post-hoc scores over seeds")
    q.add_argument("--long-judge", type=int, default=0, metavar="ITERATIONS",
                   help="also train the stronger discriminator this many iterations "
                   "(e.g. 12000; ~100 s on one CPU thread): 2,000 can miss a difference a "
                   "longer-trained classifier finds (0 = off)")  # fmt: skip
    q.add_argument("--pipeline", metavar="FILE", help="pipeline YAML (decode settings)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _train_args(q)
    q.set_defaults(func=run_evaluate_generated)


def _train_config(args: argparse.Namespace, m: ModelConfig) -> TrainConfig:
    """CLI flags over the pipeline's ``model`` section (defaults → pipeline → CLI); the
    epochs and patience default by model kind (:mod:`streamgen.batch.kinds`)."""
    from streamgen.batch.train import TrainConfig, default_min_steps

    kind = getattr(args, "model", None) or "vae"
    for name in ("epochs", "batch_size", "patience", "max_seconds"):
        v = getattr(args, name, None)
        if v is not None and v <= 0 and not (name == "epochs" and v == 0):
            raise ConfigError(f"--{name.replace('_', '-')}: must be positive, got {v}")
    spe = getattr(args, "steps_per_epoch", None)
    if spe is not None and spe < 0:
        raise ConfigError(f"--steps-per-epoch: must not be negative, got {spe}")
    return TrainConfig(
        epochs=args.epochs if args.epochs is not None else DEFAULT_EPOCHS[kind],
        batch_size=args.batch_size or m.train_batch,
        lr=args.lr or m.lr,
        patience=args.patience if args.patience is not None else DEFAULT_PATIENCE[kind],
        grad_clip=m.grad_clip,
        seed=args.seed if args.seed is not None else m.seed,
        device=args.device or m.device,
        max_seconds=args.max_seconds,
        progress=True if args.progress is None else args.progress,
        steps_per_epoch=spe,
        cpu_threads=m.cpu_threads,
        min_steps=default_min_steps(kind, args.epochs, spe),
    )


def run_backfill(args: argparse.Namespace) -> int:
    """``streamgen backfill``: returns 0; bad arguments raise ConfigError."""
    # Imported here: the parser (``streamgen backfill --help``) needs none of them.
    from streamgen.batch.backfill import BackfillOptions, backfill
    from streamgen.batch.distributed import finish
    from streamgen.config import load_pipeline

    pipe = load_pipeline(args.pipeline, args.overrides)
    if not Path(args.input).is_file():
        raise ConfigError(f"input: file not found: {args.input}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction: must be in [0, 1), got {args.val_fraction}")
    if args.synthetic < 0 or args.max_gap_points < 0:
        raise ConfigError("--synthetic/--max-gap-points: must not be negative")
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise ConfigError(f"--output-dir: not a directory: {args.output_dir}")
    opts = BackfillOptions(
        model=args.model,
        output_dir=args.output_dir,
        epochs=args.epochs,
        val_fraction=args.val_fraction,
        n_synthetic=args.synthetic,
        max_gap_points=args.max_gap_points,
        checkpoint_in=args.checkpoint_in,
        checkpoint_out=args.checkpoint_out,
        train=_train_config(args, pipe.model),
        vae_sample=args.vae_sample,
    )
    try:
        summary = backfill(args.input, pipe, opts)
    finally:
        finish()
    if summary:
        s = summary["scores"]
        print(f"backfill: {summary['rows']} rows, {s['scored_rows']} scored, "
              f"{s['error_rows']} errors, {s['anomalies']} anomalies -> {args.output_dir}")  # fmt: skip
    return 0


def run_evaluate_generated(args: argparse.Namespace) -> int:
    """``streamgen evaluate-generated``: print the quality metrics as a table; returns 0."""
    from streamgen.batch.generated import evaluate_generated, format_quality, from_backfill
    from streamgen.config import load_pipeline

    pipe = load_pipeline(args.pipeline, args.overrides)
    if args.backfill is not None:
        from_backfill(args)
    if args.model is None and (args.real is None or args.synthetic is None):
        raise ConfigError("evaluate-generated: give --backfill DIR, --real and --synthetic, "
                          "or --model and --input")  # fmt: skip
    if args.model is not None and args.input is None:
        raise ConfigError("--input: required with --model (a CSV/JSONL file or 'sines')")
    if (args.seq_len is not None and args.seq_len < 2) or args.n < 4 or args.iterations < 1 \
            or args.repeats < 1 or args.long_judge < 0:
        raise ConfigError("--seq-len/--n/--iterations/--repeats/--long-judge: too small")
    metrics = evaluate_generated(args, pipe, _train_config(args, pipe.model))
    print(format_quality(metrics), end="")
    if args.output_dir is not None:
        print(f"written: {args.output_dir / 'quality.json'}, {args.output_dir / 'pca.png'}")
    return 0
