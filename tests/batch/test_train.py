"""Epoch loop: checkpoints load with weights_only=True, round trip exactly, resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from streamgen.batch.checkpoint import default_model_args, load_checkpoint, model_from_checkpoint
from streamgen.batch.sines import sine_data
from streamgen.batch.train import TrainConfig, train
from streamgen.errors import ConfigError

TINY = {"hidden": 8, "latent": 4}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = sine_data(96, seq_len=10, dim=2, seed=0)
    return (x[:64] - 0.5) * 4, (x[64:] - 0.5) * 4


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_checkpoint_round_trip_gives_identical_outputs(kind, data, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, device="cpu")
    args = default_model_args(kind, 2, **TINY)
    ckpt_path = tmp_path / "m.pt"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    res = train(kind, args, *data, cfg, checkpoint_path=ckpt_path, data_state={"w": 10})
    # Each of the 3 writes (2 epochs, the final fits) fsyncs the file and its folder.
    assert len(synced) == 6 and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert len(res.history) == 2 and all(np.isfinite(r["val"]) for r in res.history)
    ckpt = torch.load(ckpt_path, weights_only=True)  # plain dict: no pickled objects
    assert set(ckpt) >= {"model", "optimizer", "model_args", "epoch", "config"}
    assert ckpt["epoch"] == 1 and ckpt["config"]["data"] == {"w": 10}
    loaded = model_from_checkpoint(load_checkpoint(ckpt_path))
    x = torch.from_numpy(data[1][:8])
    w1, p1 = res.model.score(x)
    w2, p2 = loaded.score(x)
    assert torch.equal(w1, w2) and torch.equal(p1, p2)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(res.model.sample(4, 10, generator=g1), loaded.sample(4, 10, generator=g2))


def test_resume_matches_uninterrupted_run(data, tmp_path):
    args = default_model_args("vae", 2, **TINY)
    cfg3 = TrainConfig(epochs=3, batch_size=16, progress=False, device="cpu")
    full = train("vae", args, *data, cfg3)
    cfg1 = TrainConfig(epochs=1, batch_size=16, progress=False, device="cpu")
    train("vae", args, *data, cfg1, checkpoint_path=tmp_path / "a.pt")
    resumed = train("vae", {}, *data, cfg3, resume=load_checkpoint(tmp_path / "a.pt"))
    assert [r["epoch"] for r in resumed.history] == [0.0, 1.0, 2.0]
    assert resumed.history[-1]["val"] == pytest.approx(full.history[-1]["val"], rel=1e-5)


def test_early_stopping_and_bad_checkpoint(data, tmp_path):
    cfg = TrainConfig(epochs=50, batch_size=64, lr=0.0, patience=1, progress=False)
    res = train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    assert res.stopped_early and res.epochs_run == 2  # no progress after epoch 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="checkpoint-in"):
        load_checkpoint(bad)
