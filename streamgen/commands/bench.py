"""``streamgen bench [--suite synthetic|real|generative] [--quick] [--seeds N] [--seed S]
[--json OUT] [--markdown OUT]``.

``--suite real`` runs :func:`streamgen.bench.real.run_real_suite` instead: the labelled real
series of :mod:`streamgen.bench.realdata` (needs ``pip install 'streamgen[realdata]'``), every row
judged from each series' first point, VUS-PR/PR-AUC/ROC-AUC against random, HST, rolling z,
|Δx| and offline Sub-PCA.

``--suite generative`` runs :func:`streamgen.bench.generative.run_generative_suite` (the code of
``benchmarks/bench_generative.py``): the batch GAN and VAE with ``backfill``'s defaults on
TimeGAN's sines and two real multichannel recordings, judged by ``evaluate-generated``'s
metrics (``--detectors``: a subset of gan,vae; ``--streams``: of sines,daphnet,basicmotions;
``--quick``: sines only, 500 post-hoc iterations, no long-trained judge).

Runs :func:`streamgen.bench.suite.run_suite` (sota and rvae through the engine, River
HalfSpaceTrees, rolling z-score and |Δx| baselines on a varied labelled synthetic suite) for
seeds S..S+N-1 and prints markdown: one PR-AUC table (mean ± std over seeds, raw and
calibrated score, wins–losses against the best baseline, mean over streams), then ROC-AUC,
throughput and continuation error. The seeds draw the streams and seed the models and HST, so
the same command gives the same scores again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streamgen.commands.common import add_pipeline_args
from streamgen.models.registry import MODEL_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark models against baselines (synthetic or real data)")
    p.add_argument(
        "--suite",
        choices=("synthetic", "real", "generative"),
        default="synthetic",
        help="synthetic streams (default), the real labelled series (needs the realdata "
        "extra), or the GAN/VAE generative benchmark",
    )
    p.add_argument("--quick", action="store_true", help="small suite, one seed by default (<3 min)")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="number of seeds (default 3, quick 1); >= 3 for mean ± std",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first seed: runs seeds S..S+N-1 (overrides model.seed per run)",
    )
    p.add_argument("--json", metavar="OUT", help="write runs and summary as JSON here")
    p.add_argument("--markdown", metavar="OUT", help="write the markdown tables here too")
    p.add_argument(
        "--detectors",
        default=None,
        help=f"comma-separated subset of {','.join(MODEL_NAMES)},hst,rolling_z,diff (real suite: "
        "also random, subpca)",
    )
    p.add_argument(
        "--streams", default=None, help="comma-separated subset of stream (or series) names"
    )
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines on stderr")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamgen.bench import suite as benchsuite
    from streamgen.config import load_pipeline
    from streamgen.errors import ConfigError

    # Validated here, once: a bad setting exits 2 naming the field before anything runs.
    base = load_pipeline(args.pipeline, args.overrides)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if seeds < 1:
        raise ConfigError("--seeds: must be >= 1")
    if args.seed < 0:
        raise ConfigError("--seed: must be >= 0")
    if args.suite == "generative":
        return _run_generative(args, base, seeds)
    suite: Any = benchsuite
    names: tuple[str, ...] = benchsuite.STREAMS
    if args.suite == "real":
        from streamgen.bench import real as benchreal
        from streamgen.bench import realdata

        ok, why = realdata.available()
        if not ok:
            print(f"streamgen: error: --suite real: {why}", file=sys.stderr)
            return 2
        suite, names = benchreal, realdata.SERIES
    dets = _subset("--detectors", args.detectors, suite.DETECTORS)
    streams = _subset("--streams", args.streams, names) if args.streams else None
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.suite == "real":
        results = suite.run_real_suite(seeds, dets, None, streams, log, base, args.seed)
    else:
        results = suite.run_suite(args.quick, seeds, dets, None, streams, log, base, args.seed)
    summary = suite.summarize(results)
    if args.json:  # first: a run's results outlive a failure to format them
        Path(args.json).write_text(json.dumps(suite.to_json(results, summary), indent=1))
    text = suite.format_markdown(summary)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


def _run_generative(args: argparse.Namespace, base: Any, seeds: int) -> int:
    """``--suite generative``: :mod:`streamgen.bench.generative`, as benchmarks/bench_generative.py."""
    from streamgen.bench import generative as benchgen

    models = _subset("--detectors", args.detectors, benchgen.MODELS)
    default = ("sines",) if args.quick else benchgen.DATASETS
    datasets = _subset("--streams", args.streams, benchgen.DATASETS) if args.streams else default
    if set(datasets) - {"sines"}:
        ok, why = benchgen.available()
        if not ok:
            print(f"streamgen: error: --suite generative: {why}", file=sys.stderr)
            return 2
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    iterations = 500 if args.quick else benchgen.ITERATIONS
    long_iterations = 0 if args.quick else benchgen.LONG_ITERATIONS
    results = benchgen.run_generative_suite(
        range(args.seed, args.seed + seeds), models, datasets, log, iterations=iterations,
        long_iterations=long_iterations, pipe=base,
    )  # fmt: skip
    summary = benchgen.summarize(results)
    if args.json:
        Path(args.json).write_text(json.dumps(benchgen.to_json(results, summary), indent=1))
    text = benchgen.format_markdown(summary)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


def _subset(flag: str, given: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated choice among ``known`` (all of them when not given)."""
    from streamgen.errors import ConfigError

    chosen = tuple(given.split(",")) if given else known
    unknown = set(chosen) - set(known)
    if unknown:
        raise ConfigError(f"{flag}: unknown {sorted(unknown)}")
    return chosen
