"""The batch models' names and their training defaults, in a module of their own: the
command line lists them without importing torch (``streamgen backfill --help``)."""

MODEL_KINDS = ("gan", "vae")

# Epochs and early-stopping patience (epochs without a better validation value) when
# --epochs / --patience are not given; an epoch is at most
# streamgen.batch.train.AUTO_STEPS_PER_EPOCH batches (3,000 GAN / 1,800 VAE batches on a
# long history). GAN: on TimeGAN's sines (3 seeds, benchmarks/bench_generative.py) 30 epochs
# left its samples told apart (TimeGAN-protocol discriminative score 0.12-0.24, coverage
# 0.01-0.50) and 100 gave 0.001-0.066 and coverage 0.88-0.92; on the labelled 100,000-row
# history of benchmarks/bench_backfill.py (seed 0) its anomaly scores went from ROC-AUC 0.70 /
# PR-AUC 0.30 (it had stopped early after 330 steps) to 0.93 / 0.61. Its validation value
# (MMD of samples) is noisy, so it waits longer before stopping. VAE: 100 epochs made its
# sines samples harder to tell apart (stronger discriminator 0.37-0.43 -> 0.12-0.16) but its
# backfill anomaly scores worse (PR-AUC 0.63 -> 0.43, same history): it stays at 30.
# A history too short to fill the epochs' batch cap trains more epochs until it has had as
# many batches as a long one (TrainConfig.min_steps: streamgen.batch.train.default_min_steps):
# on sines the VAE then had 1,800 steps instead of 750 and its stronger-discriminator score
# went from 0.39 to 0.13, with backfill's scores on a short labelled history unchanged.
# The GAN does not stop early by default (patience = its epochs): its validation value, the
# MMD of 512 samples, is too noisy to say when samples stop improving. With patience 20 its
# runs on TimeGAN's sines (10,000 sequences) stopped after 68-73 of 100 epochs; trained to
# the end, the best epoch was the 66th-91st and its samples were harder to tell apart
# (benchmarks/bench_generative.py, 3 seeds: TimeGAN's judge 0.061 -> 0.024, stronger
# discriminator 0.373 -> 0.279, coverage 0.84 -> 0.90; BasicMotions 0.176 -> 0.127,
# coverage 0.54 -> 0.57; Daphnet's runs had not stopped early: unchanged). The epoch with
# the best validation value is still the one kept: the last epoch's samples were worse
# (sines, seed 0: stronger discriminator 0.388 against 0.175).
DEFAULT_EPOCHS = {"gan": 100, "vae": 30}
DEFAULT_PATIENCE = {"gan": DEFAULT_EPOCHS["gan"], "vae": 10}

# How the VAE's synthetic windows are drawn (``--vae-sample``): ``residual`` adds to each
# decoder mean the residual (window minus its reconstruction) of a training window drawn at
# random (streamgen.models.vae.VAE.sample_with_residuals); ``mean`` is the decoder mean
# alone; ``noise`` adds the decoder's per-point Gaussian noise. Measured in the README's
# generative benchmark (3 seeds per data set).
VAE_SAMPLE_MODES = ("residual", "mean", "noise")


def sampling(kind: str, vae_sample: str) -> str:
    """How ``kind``'s windows were drawn, as reports name it: the VAE's ``--vae-sample``
    mode, or ``generator`` for the GAN (which has one way)."""
    return vae_sample if kind == "vae" else "generator"


__all__ = ["DEFAULT_EPOCHS", "DEFAULT_PATIENCE", "MODEL_KINDS", "VAE_SAMPLE_MODES", "sampling"]
