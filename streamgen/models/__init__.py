"""Sequence models. Online: the models of :mod:`streamgen.models.registry` (``sota``, a
streaming autoencoder; ``rvae``, a recurrent VAE), each with its settings class next to it.

Batch (backfill): ``vae`` and ``gan`` in :mod:`streamgen.models.vae` / :mod:`streamgen.models.gan`.
"""
