"""Why training stopped, a step budget per epoch, --max-seconds inside an epoch, progress."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamgen.batch import train as train_mod
from streamgen.batch.checkpoint import default_model_args
from streamgen.batch.sines import sine_data
from streamgen.batch.train import TrainConfig, steps_per_epoch, train

TINY = {"hidden": 8, "latent": 4}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = sine_data(96, seq_len=10, dim=2, seed=0)
    return (x[:64] - 0.5) * 4, (x[64:] - 0.5) * 4


@pytest.fixture(scope="module")
def many() -> np.ndarray:
    """Enough windows for an epoch of 1,500 steps at batch 4 (far more than a test waits)."""
    return ((sine_data(6000, seq_len=10, dim=2, seed=1) - 0.5) * 4).astype(np.float32)


def test_auto_steps_per_epoch_caps_long_histories():
    cfg = TrainConfig(batch_size=64)
    assert steps_per_epoch("vae", 1000, cfg) == 16  # a full pass when it is short
    assert steps_per_epoch("vae", 100_000, cfg) == train_mod.AUTO_STEPS_PER_EPOCH["vae"]
    assert steps_per_epoch("gan", 100_000, cfg) == train_mod.AUTO_STEPS_PER_EPOCH["gan"]
    assert steps_per_epoch("vae", 100_000, TrainConfig(batch_size=64, steps_per_epoch=0)) == 1563
    assert steps_per_epoch("vae", 100_000, TrainConfig(batch_size=64, steps_per_epoch=7)) == 7


def test_steps_per_epoch_and_stop_reason_epochs(data):
    cfg = TrainConfig(epochs=3, batch_size=8, steps_per_epoch=2, progress=False, device="cpu")
    res = train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    assert res.stop_reason == "epochs" and not res.stopped_early
    assert res.steps == 6 and res.epochs_run == 3 and len(res.history) == 3


def test_min_steps_lengthens_training_on_a_short_history(data):
    # 64 windows at batch 8 are 8 batches an epoch: 2 epochs would be 16 batches; a budget
    # of 40 makes it 5 epochs (patience grows in proportion: step_budget's doctest).
    cfg = TrainConfig(epochs=2, batch_size=8, patience=5, min_steps=40, progress=False,
                      device="cpu")
    res = train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    assert res.steps == 40 and res.epochs_run == 5 and res.stop_reason == "epochs"
    # A long enough history is not trained longer than its epochs.
    cfg = TrainConfig(epochs=2, batch_size=8, min_steps=10, progress=False, device="cpu")
    assert train("vae", default_model_args("vae", 2, **TINY), *data, cfg).steps == 16


def test_early_stopping_reason(data):
    cfg = TrainConfig(epochs=50, batch_size=64, lr=0.0, patience=1, progress=False)
    res = train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    assert res.stop_reason == "early_stopping" and res.stopped_early


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_max_seconds_stops_inside_the_first_epoch(kind, many):
    # One epoch would be 1,500 steps (several seconds even for this tiny model); a 0.3 s
    # budget must end it part-way, not at the epoch's end.
    cfg = TrainConfig(epochs=5, batch_size=4, steps_per_epoch=0, max_seconds=0.3,
                      progress=False, device="cpu")  # fmt: skip
    res = train(kind, default_model_args(kind, 2, **TINY), many[:5000], many[5000:], cfg)
    assert res.stop_reason == "max_seconds" and res.stopped_early
    assert res.epochs_run == 1 and 1 <= res.steps < 1250
    assert res.history[0]["steps"] == res.steps  # the partial epoch is recorded as such
    assert res.seconds < 30  # loose: the point is "not 5 epochs", not a timing contract


def test_interrupt_stops_training_and_keeps_the_model(data, monkeypatch):
    real_step = train_mod._Stepper.step

    def step(self, batch):
        if self.n == 3:
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(train_mod._Stepper, "step", step)
    cfg = TrainConfig(epochs=5, batch_size=8, progress=False, device="cpu")
    res = train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    assert res.stop_reason == "interrupted" and res.epochs_run == 1
    assert res.history and np.isfinite(res.history[0]["val"])


def test_progress_lines_on_a_non_terminal_stderr(data, capsys):
    cfg = TrainConfig(epochs=2, batch_size=8, progress=True, progress_interval=0.0,
                      device="cpu")  # fmt: skip
    train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("backfill: vae epoch")]
    assert len(lines) >= 8  # one per step here (interval 0): 2 epochs x 8 steps
    assert "epoch 2/2 step 8/8" in err and "\r" not in err  # plain lines, no bar
    assert all(" loss " in ln and " elapsed " in ln and " eta " in ln for ln in lines)
    assert "val " in lines[-1]
    assert "training stopped (epochs) after 2 epochs, 16 steps" in err


def test_no_progress_is_silent(data, capsys):
    cfg = TrainConfig(epochs=1, batch_size=8, progress=False, progress_interval=0.0)
    train("vae", default_model_args("vae", 2, **TINY), *data, cfg)
    assert capsys.readouterr().err == ""


def test_report_says_why_training_stopped(history_csv, tmp_path, capsys):
    from tests.batch.test_command import FAST, run_cli

    src = history_csv()
    out = tmp_path / "out"
    fast = [a for a in FAST if a != "--no-progress"]
    assert run_cli(["backfill", str(src), "--model", "vae", "--output-dir", str(out),
                    "--epochs", "2", "--steps-per-epoch", "3", *fast]) == 0  # fmt: skip
    tr = json.loads((out / "report.json").read_text())["training"]
    assert tr["stop_reason"] == "epochs" and tr["steps"] == 6 and tr["steps_per_epoch"] == 3
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["timings"]) >= {"read", "train", "score", "total"}
    err = capsys.readouterr().err  # stderr is not a terminal here: plain stage lines
    assert "backfill: read: " in err and "backfill: score: " in err
    assert "backfill: vae training stopped (epochs)" in err

    out2 = tmp_path / "out2"
    assert run_cli(["backfill", str(src), "--model", "vae", "--output-dir", str(out2),
                    "--epochs", "1000", "--max-seconds", "0.5", *FAST,
                    "--patience", "1000"]) == 0  # fmt: skip  # no early stop before the budget
    tr = json.loads((out2 / "report.json").read_text())["training"]
    assert tr["stop_reason"] == "max_seconds" and tr["epochs_run"] < 1000
    assert tr["max_seconds"] == 0.5
