"""Offline training on a recording warm-starts scoring: the first anomalies of a new stream
are caught by a warm-started model while a cold one is still warming up."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np

SMALL = ["--set", "model.hidden=32", "--set", "model.latent=8", "--set", "batch.max_records=256"]


def _run(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "streamgen", *args], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


def test_train_then_warm_start_beats_cold_start(stream_file, tmp_path):
    # The recording and the new stream share the same sensors (same seed → same signals);
    # the new stream is the next stretch of time with anomalies early on.
    history = stream_file("history.csv", n_keys=3, n_points=1500, seed=5, anomalies_per_key=2)
    new = stream_file("new.csv", n_keys=3, n_points=400, seed=5, anomalies_per_key=3,
                      warmup_points=60)
    ck = tmp_path / "model.pt"
    res = _run("train", str(history), "--model", "sota", "--checkpoint-out", str(ck),
               "--epochs", "2", *SMALL)
    assert "epoch 2" in res.stderr and ck.is_file()
    cold, warm = tmp_path / "cold.csv", tmp_path / "warm.csv"
    # The model's own evidence only: the key's forecast and first-difference detectors, which
    # need no training, would catch some anomalies in both runs.
    model_only = [*SMALL, "--set", "calibrate.detectors=[model]"]
    _run("score", str(new), "-o", str(cold), *model_only)
    _run("score", str(new), "-o", str(warm), "--checkpoint-in", str(ck), *model_only)

    def load(path):
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
        flags = np.array([r["is_anomaly"] == "true" for r in rows])
        warm = np.array([r["warm"] == "true" for r in rows])
        return flags, warm, np.array([int(r["label"]) for r in rows])

    cold_flags, cold_warm, labels = load(cold)
    warm_flags, warm_warm, _ = load(warm)
    assert labels.sum() > 0
    # The cold model is still warming up over this stretch; the warm-started one scores
    # with a trained model from its first full windows and catches the first anomalies.
    hits_warm = int((warm_flags & (labels == 1)).sum())
    hits_cold = int((cold_flags & (labels == 1)).sum())
    false_warm = int((warm_flags & (labels == 0)).sum())
    assert warm_warm.sum() > cold_warm.sum()
    assert hits_warm > hits_cold, (hits_warm, hits_cold)
    assert hits_warm > false_warm, (hits_warm, false_warm)
