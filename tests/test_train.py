"""Offline training on a recording warm-starts scoring: the first anomalies of a new stream
are ranked better by a warm model than by a cold one."""

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


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


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
    _run("score", str(new), "-o", str(cold), *SMALL)
    _run("score", str(new), "-o", str(warm), "--checkpoint-in", str(ck), *SMALL)

    def load(path):
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
        return np.array([float(r["score"]) for r in rows]), np.array(
            [int(r["label"]) for r in rows])

    s_cold, labels = load(cold)
    s_warm, _ = load(warm)
    assert labels.sum() > 0
    auc_cold, auc_warm = _auc(s_cold, labels), _auc(s_warm, labels)
    assert auc_warm > auc_cold + 0.02, (auc_warm, auc_cold)
