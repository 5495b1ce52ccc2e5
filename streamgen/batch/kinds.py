"""The batch models' names and their training defaults, in a module of their own: the
command line lists them without importing torch (``streamgen backfill --help``)."""

MODEL_KINDS = ("gan", "vae")

# Epochs and early-stopping patience (epochs without a better validation value) when
# --epochs / --patience are not given; with the per-epoch cap of 30 batches
# (streamgen.batch.train.AUTO_STEPS_PER_EPOCH) a long history trains 3,000 batches. On
# TimeGAN's sines (3 seeds, benchmarks/bench_generative.py, README "Generated data") 30
# epochs left the GAN's samples told apart (TimeGAN-protocol discriminative score
# 0.12-0.24, coverage 0.01-0.50) and 100 gave 0.001-0.066 and coverage 0.88-0.92; the VAE
# went from 0.37-0.43 to 0.12-0.16 under the stronger discriminator. Both were still
# improving at the end. The GAN's validation value (MMD of samples) is noisy, so it waits
# longer before stopping early.
DEFAULT_EPOCHS = {"gan": 100, "vae": 100}
DEFAULT_PATIENCE = {"gan": 20, "vae": 10}

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_PATIENCE", "MODEL_KINDS"]
