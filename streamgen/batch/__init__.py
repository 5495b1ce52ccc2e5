"""Batch mode (``streamgen backfill``): GAN/VAE trained for epochs on recorded history.

Data flow: :mod:`~streamgen.batch.history` (decode every row) → :mod:`~streamgen.batch.dataset`
(per-key windows, fitted normalization, time split) → :mod:`~streamgen.batch.train` (epochs,
early stopping, checkpoints, DDP) → :mod:`~streamgen.batch.outputs` (scores, imputation,
synthetic windows) → :mod:`~streamgen.batch.report`. :mod:`~streamgen.batch.quality` measures
generated data (discriminative/predictive score, MMD, precision/recall/coverage).
The command line (``backfill``, ``evaluate-generated``) is :mod:`streamgen.commands.backfill`.
"""
