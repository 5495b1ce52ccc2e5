"""Backfill's synthetic windows: which training windows they draw on, and their keys."""

from __future__ import annotations

import csv

import numpy as np
import torch

from streamgen.batch.dataset import KeyScaler, group_by_key, make_windows
from streamgen.batch.history import read_history
from streamgen.batch.outputs import draw_windows, write_synthetic
from streamgen.models.gan import GAN, GANConfig
from streamgen.models.vae import VAE, VAEConfig


def _keys(path) -> set[str]:
    with open(path, newline="") as f:
        return {r["key"] for r in csv.DictReader(f)}


def test_residual_samples_take_the_key_of_their_training_window(history_csv, tmp_path):
    hist = read_history(history_csv(bad_rows=False))
    series = group_by_key(hist.records)
    scaler = KeyScaler.fit(series)
    windows = make_windows(series, scaler, 8)
    torch.manual_seed(0)
    vae = VAE(VAEConfig(n_channels=len(hist.channels), hidden=8, latent=4)).eval()
    only_y = np.flatnonzero(windows.key_index == scaler.keys.index("y"))
    out = tmp_path / "synthetic.csv"
    _, synth, info = write_synthetic(out, hist.channels, windows, scaler, vae, 8, 30, 0, only_y)
    assert synth.shape == (30, 8, 2) and _keys(out) == {"y"}  # residuals of y's windows only
    assert info == {}  # no held-out windows given: no closest ratio
    write_synthetic(out, hist.channels, windows, scaler, vae, 8, 30, 0, only_y, "mean")
    assert _keys(out) == {"x", "y"}  # decoder means: keys drawn at random


def test_draw_windows_by_mode():
    x = np.random.default_rng(0).normal(size=(50, 6, 2)).astype(np.float32)
    torch.manual_seed(0)
    vae = VAE(VAEConfig(n_channels=2, hidden=8, latent=4)).eval()
    resid, src = draw_windows(vae, 12, 6, x, "residual", torch.Generator().manual_seed(1))
    mean, none = draw_windows(vae, 12, 6, x, "mean", torch.Generator().manual_seed(1))
    noisy, _ = draw_windows(vae, 12, 6, x, "noise", torch.Generator().manual_seed(1))
    assert src is not None and none is None and src.min() >= 0 and src.max() < 50
    assert not np.allclose(resid, mean) and not np.allclose(noisy, mean)
    # no training windows of the asked length: decoder means
    other, none = draw_windows(vae, 12, 7, x, "residual", torch.Generator().manual_seed(1))
    assert none is None and other.shape == (12, 7, 2)
    gan = GAN(GANConfig(n_channels=2, hidden=8, latent=4, noise_dim=2)).eval()
    g, none = draw_windows(gan, 5, 6, x, "residual")
    assert g.shape == (5, 6, 2) and none is None
