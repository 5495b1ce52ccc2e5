"""Generative benchmark: the batch GAN and VAE (``streamgen backfill``'s defaults) judged
by ``evaluate-generated``'s metrics on TimeGAN's sines and two real multichannel recordings.

Runs :func:`streamgen.bench.generative.run_generative_suite` (the code ``streamgen bench --suite
generative`` runs too) and prints one markdown table: per data set and model, mean ± sample
std over seeds of TimeGAN's discriminative score (its own 1-layer judge), the stronger
discriminator (2-layer GRU of 16 units), the predictive score (train on synthetic, test on
real) next to the same model trained on real windows, k-NN precision/recall/coverage, MMD²
and the training time; the published sines figures (TimeGAN 0.011, Diffusion-TS 0.006); and
issue #17's targets, met or not.

Protocol (see :mod:`streamgen.bench.generative` for the details):

* windows of 24 steps (TimeGAN's length) on every data set, in raw units;
* ``sines``: 10,000 independent sequences of 5 channels per seed (TimeGAN's size and
  ``evaluate-generated``'s default ``--n``; ``--n-sines`` changes it);
* ``daphnet``: Daphnet Freezing of Gait recording S06R02E0, 9 accelerometer channels at
  64 Hz, 7,040 rows (one key), shipped in the ``aeon`` wheel
  (``aeon/datasets/data/Daphnet_S06R02E0/S06R02E0.csv``). Source stated by aeon: Roggen,
  Plotnik & Hausdorff (2013), UCI Machine Learning Repository, doi:10.24432/C56K78; aeon's
  licence is BSD-3-Clause and it states no separate data licence. aeon 1.6 deprecates the
  file (gone in aeon 1.7);
* ``basicmotions``: UEA BasicMotions, 80 recordings × 100 rows of a smart watch's 3-axis
  accelerometer and gyroscope at 10 Hz (one key each), shipped in the ``aeon`` wheel
  (``aeon/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts``). Source stated in the
  file: a student project, UEA multivariate classification archive; aeon's licence is
  BSD-3-Clause and it states no separate data licence (the UCR/UEA archive is free for
  research use);
* training: ``streamgen backfill``'s defaults, parsed by its own parser (VAE: 30 epochs of at
  most 60 batches of 64, patience 10; GAN: 100 epochs of at most 30, no early stopping; one
  torch thread), on a random
  80 % of the windows (the rest for early stopping), as ``evaluate-generated --model`` does;
  as many windows sampled as there are real ones, compared with all of them;
* post-hoc models: 2,000 iterations each (``evaluate-generated``'s default), one thread;
  and the stronger discriminator once more, trained 12,000 iterations (``--long-judge``,
  ``evaluate-generated --long-judge``): 2,000 can stop before it has learnt a difference
  that is there.

Usage::

    # the README table: 3 seeds, every data set and model (~100 min on a 2-core machine)
    nice -n 10 .venv/bin/python benchmarks/bench_generative.py --seeds 0 1 2 --json gen.json
    # a quick look: sines only, one seed, 500 post-hoc iterations, no long judge
    .venv/bin/python benchmarks/bench_generative.py --datasets sines --seeds 0 \
        --iterations 500 --long-judge 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from streamgen.batch.kinds import VAE_SAMPLE_MODES
    from streamgen.bench import generative as benchgen

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", choices=benchgen.MODELS, default=list(benchgen.MODELS))
    p.add_argument("--datasets", nargs="+", choices=benchgen.DATASETS,
                   default=list(benchgen.DATASETS))  # fmt: skip
    p.add_argument("--seq-len", type=int, default=benchgen.SEQ_LEN)
    p.add_argument("--n-sines", type=int, default=benchgen.N_SINES)
    p.add_argument("--iterations", type=int, default=benchgen.ITERATIONS,
                   help="iterations of each post-hoc GRU")  # fmt: skip
    p.add_argument("--long-judge", type=int, default=benchgen.LONG_ITERATIONS,
                   metavar="ITERATIONS", help="iterations of the long-trained stronger "
                   "discriminator (0 = skip it; ~100 s per run on one thread)")  # fmt: skip
    p.add_argument("--vae-sample", choices=VAE_SAMPLE_MODES, default="residual",
                   help="how the VAE draws windows (backfill's --vae-sample)")  # fmt: skip
    p.add_argument("--no-fresh", action="store_true",
                   help="skip the floor rows (unseen real windows judged as if generated)")  # fmt: skip
    p.add_argument("--json", metavar="PATH", help="write runs and summary as JSON here")
    p.add_argument("--quiet", action="store_true", help="no per-run lines on stderr")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    load0, t0 = os.getloadavg()[0], time.monotonic()

    def save(results: list[benchgen.GenResult]) -> None:  # after every run: partial results
        if args.json:
            summary = benchgen.summarize(results)
            Path(args.json).write_text(json.dumps(benchgen.to_json(results, summary), indent=1))

    results = benchgen.run_generative_suite(
        args.seeds, args.models, args.datasets, log, save,
        seq_len=args.seq_len, n_sines=args.n_sines, iterations=args.iterations,
        long_iterations=args.long_judge, vae_sample=args.vae_sample, fresh=not args.no_fresh,
    )  # fmt: skip
    summary = benchgen.summarize(results)
    summary["wall_seconds"] = round(time.monotonic() - t0, 1)
    summary["load_average"] = {"start": load0, "end": os.getloadavg()[0]}
    if args.json:
        Path(args.json).write_text(json.dumps(benchgen.to_json(results, summary), indent=1))
    print(benchgen.format_markdown(summary))
    print(f"\nwall {summary['wall_seconds']:.0f} s; load average {load0:.1f} at start, "
          f"{summary['load_average']['end']:.1f} at end")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
