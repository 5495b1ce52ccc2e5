"""What the discriminators see in generated sines: roughness, or the spread of phases.

TimeGAN's sines are a two-parameter family per channel (``sin(f t + p)``, ``f, p ~ U[0,
0.1)``), so the ways a generated window can differ from a real one are measurable: its
distance from the closest sinusoid of the family (:func:`streamgen.batch.sines.fit_sines`),
its second differences (roughness), and the distribution of its channels' fitted ``f`` and
``p``. This script trains a model exactly as the generative benchmark does (``streamgen
backfill``'s defaults, the data and split of :func:`streamgen.bench.generative.run_one`),
prints those statistics for real and generated windows, then asks both discriminators (the
stronger one and TimeGAN's) about altered samples:

* ``samples``: the model's windows as they are;
* ``samples, cubic per channel``: each channel replaced by its least-squares cubic, which
  removes the jitter and leaves the shape (the same done to fresh real sines is the control:
  if they stay indistinguishable, the cubic itself is no cue);
* ``in range, subset``: only the windows whose every channel's fitted ``f`` and ``p`` lie in
  ``[0, 0.1)``, next to a random subset of the samples and of fresh real sines of the same
  size (fewer windows make a weaker discriminator: compare the three with each other).

Repairing samples by replacing them with their fitted sinusoids is not among the variants:
the fit of a window that is not a sine biases ``f`` and ``p``, so those repaired windows are
told apart more easily than the samples (the VAE's, indistinguishable as they are, scored
0.12 after it), which says nothing about the samples.

Usage::

    .venv/bin/python benchmarks/diag_sines.py --model gan --seed 0   # ~4 min on one thread
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from streamgen.batch.device import cpu_threads
    from streamgen.batch.quality import discriminative_score, timegan_discriminative_score
    from streamgen.batch.sines import PARAM_RANGE, fit_sines, in_param_range, sine_data
    from streamgen.bench.generative import MODELS, N_SINES, train_and_sample

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="gan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=N_SINES, help="sines per seed (10,000)")
    p.add_argument("--iterations", type=int, default=2000, help="per post-hoc discriminator")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 400 sines, 4 training steps, 20 iterations per judge")  # fmt: skip
    args = p.parse_args(argv)
    overrides = None
    if args.quick:
        args.n, args.iterations = 400, 20
        overrides = {"epochs": 2, "steps_per_epoch": 2}

    t0 = time.monotonic()
    real, synth, cfg, _ = train_and_sample(
        "sines", args.model, args.seed, n_sines=args.n, train_overrides=overrides
    )
    print(f"trained {args.model}, seed {args.seed}: {time.monotonic() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(args.seed + 7)

    def describe(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, ph, rmse = fit_sines(x)
        d2 = np.abs(np.diff(x, n=2, axis=1)).mean()
        out = (~in_param_range(f)).mean(), (~in_param_range(ph)).mean()
        bins = np.linspace(*PARAM_RANGE, 6)  # the last bin includes its right edge
        hf = np.histogram(np.clip(f, *PARAM_RANGE), bins)[0] / f.size
        hp = np.histogram(np.clip(ph, *PARAM_RANGE), bins)[0] / ph.size
        print(
            f"| {name} | {np.median(rmse):.4f} | {d2:.4f} | {out[0]:.3f} / {out[1]:.3f} "
            f"| {' '.join(f'{v:.2f}' for v in hf)} | {' '.join(f'{v:.2f}' for v in hp)} |"
        )
        return f, ph

    print(
        "\n| windows | sine-fit RMSE (median) | mean abs. 2nd difference | f / p outside [0, 0.1) "
        "| f in fifths of [0, 0.1) | p in fifths of [0, 0.1) (values outside in the end fifths) |"
    )
    print("|---|---|---|---|---|---|")
    describe("real", real)
    f, ph = describe(args.model, synth)
    in_range = (in_param_range(f) & in_param_range(ph)).all(1)
    fresh = sine_data(len(real), seed=args.seed + 10_000)
    n = int(in_range.sum())

    def subset(x: np.ndarray) -> np.ndarray:
        return x[rng.choice(len(x), n, replace=False)]

    def cubic(x: np.ndarray) -> np.ndarray:
        v = np.vander(np.arange(x.shape[1]), 4)
        flat = x.transpose(1, 0, 2).reshape(x.shape[1], -1)
        fit = v @ np.linalg.lstsq(v, flat, rcond=None)[0]
        return fit.reshape(x.shape[1], x.shape[0], x.shape[2]).transpose(1, 0, 2)

    print(f"\nwindows with every channel's f and p in [0, 0.1): {n} of {len(synth)}")
    variants = [
        ("samples", synth),
        ("samples, cubic per channel", cubic(synth)),
        ("fresh real, cubic per channel", cubic(fresh)),
    ]
    if n >= 100:  # fewer: nothing for a discriminator to learn from
        variants += [
            (f"samples, random subset of {n}", subset(synth)),
            (f"samples in range, {n}", synth[in_range]),
            (f"fresh real, random subset of {n}", subset(fresh)),
        ]
    variants.append(("fresh real", fresh))
    print("\n| windows | stronger discriminator | TimeGAN's judge |\n|---|---|---|")
    with cpu_threads(cfg.cpu_threads):
        for name, x in variants:
            strong = discriminative_score(real, x, iterations=args.iterations, seed=args.seed)
            weak = timegan_discriminative_score(real, x, iterations=args.iterations, seed=args.seed)
            print(f"| {name} | {strong:.3f} | {weak:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
