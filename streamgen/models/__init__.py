"""Sequence models. Online: ``sota`` (streaming autoencoder), ``rvae`` (recurrent VAE).

Batch (backfill): ``vae`` and ``gan`` in :mod:`streamgen.models.vae` / :mod:`streamgen.models.gan`.
"""
