"""Console entry point: parses arguments, builds config, wires adapters to the engine.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (one line naming the
bad field).
"""

from __future__ import annotations

import argparse
import sys

from streamgen import __version__
from streamgen.errors import CheckpointError, ConfigError, StreamgenError


def build_parser() -> argparse.ArgumentParser:
    from streamgen.batch import command as batch
    from streamgen.commands import bench, demo, record, replay, run, score, train
    from streamgen.evaluation import command as evaluate

    parser = argparse.ArgumentParser(
        prog="streamgen",
        description="Online deep generative models for anomaly scoring and forecasting on streams.",
    )
    parser.add_argument("--version", action="version", version=f"streamgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (score, train, evaluate, run, demo, record, replay, batch, bench):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
