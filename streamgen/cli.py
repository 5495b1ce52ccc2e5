"""Console entry point: parses arguments, builds config, wires adapters to the engine.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (one line naming the
bad field).

Start-up cost: only the subcommand being run has its module imported (torch, numpy, pydantic,
kafka... come with it, not before); every other subcommand is a stub parser with the same name
and help, which is all ``streamgen --help`` and the top-level errors show. ``_COMMANDS`` lists
them; a test checks it against what each module's ``register`` adds.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from streamgen import __version__
from streamgen.errors import CheckpointError, ConfigError, StreamgenError

#: (module with ``register(subparsers)``, ((subcommand, help), ...) it adds), in help order.
_COMMANDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("streamgen.commands.score",
     (("score", "score a CSV/JSONL file (one output row per input row)"),)),
    ("streamgen.commands.train",
     (("train", "train an online model offline on a recorded stream"),)),
    ("streamgen.commands.evaluate",
     (("evaluate", "evaluate anomaly scores against labels and forecasts against actuals"),)),
    ("streamgen.commands.run",
     (("run", "run the Kafka consumer service (until SIGTERM/SIGINT)"),)),
    ("streamgen.commands.demo",
     (("demo", "local broker + synthetic stream + consumer + report"),)),
    ("streamgen.commands.record", (("record", "record a Kafka topic to JSONL (.gz)"),)),
    ("streamgen.commands.replay",
     (("replay", "replay a recording or data file into a Kafka topic"),)),
    ("streamgen.commands.backfill",
     (("backfill", "train a GAN/VAE on history; score, impute, sample it"),
      ("evaluate-generated", "quality of generated windows (TimeGAN metrics)"))),
    ("streamgen.commands.bench",
     (("bench", "benchmark models against baselines (synthetic or real data)"),)),
)  # fmt: skip

#: ``build_parser(ALL)``: every subcommand built in full.
ALL = "*"


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The ``streamgen`` parser, with subcommand ``command`` built in full (its module
    imported) and the others as stubs of the same name and help; ``ALL`` (the default) builds
    every one, ``None`` none (enough for ``streamgen --help`` and ``--version``)."""
    parser = argparse.ArgumentParser(
        prog="streamgen",
        description="Online deep generative models for anomaly scoring and forecasting on streams.",
    )
    parser.add_argument("--version", action="version", version=f"streamgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module, names in _COMMANDS:
        if command == ALL or any(name == command for name, _ in names):
            _import(module).register(sub)
        else:
            for name, help_text in names:
                sub.add_parser(name, help=help_text)
    return parser


def _import(module: str) -> Any:
    """``module``, imported with the cyclic garbage collector paused (see ``gc_paused``)."""
    from streamgen.commands.common import gc_paused

    with gc_paused():
        return importlib.import_module(module)


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first argument that does not start with ``-``.

    The top-level options take no value, so this is the argument argparse takes for COMMAND
    whenever that is a valid name (the arguments starting with ``-`` that argparse reads as
    positional, such as ``-`` or ``-1``, name no subcommand: those runs stop on "invalid
    choice", which the stubs give just the same)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_in(argv)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CheckpointError) as exc:
        print(f"streamgen: error: {exc}", file=sys.stderr)
        return 2
    except StreamgenError as exc:
        print(f"streamgen: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
