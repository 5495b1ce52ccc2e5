"""Generated-data metrics: identical sets score as perfect, disjoint sets as bad."""

from __future__ import annotations

import numpy as np
import pytest

from streamgen.batch.quality import (
    closest_ratio,
    discriminative_score,
    evaluate_quality,
    mmd_rbf,
    precision_recall_coverage,
    predictive_score,
)
from streamgen.batch.sines import fit_sines, sine_data


@pytest.fixture(scope="module")
def sines() -> np.ndarray:
    return sine_data(200, seq_len=12, dim=3, seed=0)


def test_sines_match_timegan_recipe():
    x = sine_data(50, seed=1)
    assert x.shape == (50, 24, 5) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # Frequencies below 0.1 rad/step: consecutive steps differ by < 0.05 after scaling.
    assert np.abs(np.diff(x, axis=1)).max() < 0.05


def test_fit_sines_recovers_the_family_and_flags_what_is_not_in_it():
    rng = np.random.default_rng(3)
    f = rng.uniform(0.0, 0.1, size=(40, 2))
    p = rng.uniform(0.0, 0.1, size=(40, 2))
    t = np.arange(24)[None, :, None]
    x = (np.sin(f[:, None, :] * t + p[:, None, :]) + 1.0) * 0.5
    f_hat, p_hat, rmse = fit_sines(x)
    assert np.abs(f_hat - f).max() < 1e-6 and np.abs(p_hat - p).max() < 1e-6
    assert rmse.max() < 1e-6
    # A phase outside the data set's range is found as such; jitter shows as distance.
    late = (np.sin(f[:, None, :] * t + 0.15) + 1.0) * 0.5
    assert np.allclose(fit_sines(late)[1], 0.15, atol=1e-6)
    rough = x + rng.normal(0.0, 0.01, size=x.shape)
    assert np.median(fit_sines(rough)[2]) > 5e-3


def test_identical_sets_score_perfect(sines):
    assert discriminative_score(sines, sines, iterations=150, device="cpu") < 0.1
    assert mmd_rbf(sines, sines) == pytest.approx(0.0, abs=1e-12)
    prc = precision_recall_coverage(sines, sines)
    assert prc == {"precision": 1.0, "recall": 1.0, "coverage": 1.0}


def test_disjoint_sets_score_bad(sines):
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 1.0, size=sines.shape).astype(np.float32)
    assert discriminative_score(sines, noise, iterations=150, device="cpu") > 0.4
    assert mmd_rbf(sines, noise) > 0.3
    prc = precision_recall_coverage(sines, noise)
    assert prc["precision"] < 0.05 and prc["coverage"] < 0.05


def test_predictive_score_prefers_real_training_data(sines):
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 1.0, size=sines.shape).astype(np.float32)
    on_real = predictive_score(sines, sines, train_on="real", iterations=200, device="cpu")
    on_noise = predictive_score(sines, noise, iterations=200, device="cpu")
    assert on_real < on_noise


def test_evaluate_quality_writes_pca_plot(sines, tmp_path):
    out = evaluate_quality(sines, sines[::-1].copy(), iterations=20, plot_path=tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert set(out) >= {"discriminative_score", "predictive_score", "mmd2_rbf", "coverage"}


def test_long_judge_is_the_stronger_judge_trained_longer(sines):
    rng = np.random.default_rng(1)
    rough = sines + rng.normal(0.0, 0.02, size=sines.shape).astype(np.float32)
    out = evaluate_quality(sines, rough, iterations=5, seed=3, long_iterations=40)
    assert out["long_iterations"] == 40
    assert out["discriminative_score_long"] == discriminative_score(
        sines, rough, iterations=40, seed=3)
    assert "discriminative_score_long" not in evaluate_quality(sines, rough, iterations=5)


def test_closest_ratio_finds_copies_among_overlapping_windows():
    """Stride-1 windows of one recording: a held-out window's nearest training windows are
    its own shifted neighbours; with positions they do not count, and copies of training
    windows show up as a ratio well below 1 (without positions they would not)."""
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=(3000, 2)), axis=0)
    win = np.lib.stride_tricks.sliding_window_view(walk, 16, axis=0).transpose(0, 2, 1)
    pos = np.stack([np.zeros(len(win), int), np.arange(len(win))], axis=1)
    tr, ho = np.arange(0, len(win), 2), np.arange(1, len(win), 2)
    # copies of training windows, perturbed about as much as a one-step shift changes one
    copies = win[tr][rng.permutation(len(tr))[:500]] + rng.normal(0, 1.0, (500, 16, 2))
    with_pos = closest_ratio(copies, win[tr], win[ho], pos[tr], pos[ho])
    without = closest_ratio(copies, win[tr], win[ho])
    assert with_pos < 0.6 and without > 0.9
