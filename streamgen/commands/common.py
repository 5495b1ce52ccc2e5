"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse

from streamgen.config import PipelineConfig, load_pipeline


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", metavar="FILE", help="pipeline YAML (defaults when omitted)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a pipeline setting, e.g. --set window.length=64 (repeatable)",
    )


def pipeline_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> PipelineConfig:
    return load_pipeline(getattr(args, "pipeline", None), list(args.overrides) + (extra or []))
