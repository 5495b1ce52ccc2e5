"""``streamgen backfill`` / ``evaluate-generated`` end to end on tiny files."""

from __future__ import annotations

import argparse
import csv
import json
import math

import pytest

from streamgen.commands.backfill import register
from streamgen.errors import ConfigError, StreamgenError


def run_cli(argv: list[str]) -> int:
    """``streamgen ARGV`` through the real entry point once it has our commands, else ours."""
    from streamgen import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "backfill" in sub.choices:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="streamgen")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError:
        return 2
    except StreamgenError:
        return 1


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


FAST = ["--set", "window.length=16", "--set", "model.hidden=8", "--set", "model.latent=4",
        "--no-progress", "--synthetic", "8"]  # fmt: skip


@pytest.mark.parametrize("model", ["vae", "gan"])
def test_backfill_one_row_per_input_row(model, history_csv, tmp_path):
    src = history_csv()
    out = tmp_path / "out"
    assert run_cli(["backfill", str(src), "--model", model, "--output-dir", str(out),
                    "--epochs", "2", *FAST]) == 0  # fmt: skip
    n_in = len(_rows(src))
    scores = _rows(out / "scores.csv")
    assert list(scores[0]) == ["row", "key", "timestamp", "score", "calibrated", "threshold",
                               "is_anomaly", "warm", "error"]  # fmt: skip
    assert [int(r["row"]) for r in scores] == list(range(n_in))
    bad = {int(r["row"]): r for r in scores if r["error"]}
    assert set(bad) == {9, 19, 139}  # unparsable time, non-numeric value, NaN value
    assert all(r["score"] == "" for r in bad.values())
    assert "unparsable time" in bad[9]["error"] and "non-finite" in bad[139]["error"]
    good = [r for r in scores if not r["error"]]
    assert all(math.isfinite(float(r["score"])) for r in good)
    assert {r["warm"] for r in good} == {"true", "false"}
    # imputed.csv: three missing timestamps of key x plus its two gap rows are filled.
    imputed = _rows(out / "imputed.csv")
    filled = [r for r in imputed if r["imputed"] == "1"]
    assert len(filled) == 5 and all(math.isfinite(float(r["a"])) for r in filled)
    assert sum(1 for r in filled if r["row"] == "") == 3
    assert len(_rows(out / "synthetic.csv")) == 8 * 16
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] == n_in and report["scores"]["error_rows"] == 3
    assert (out / "report.png").stat().st_size > 1000
    assert (out / "checkpoint.pt").is_file()


def test_backfill_reuses_checkpoint_with_identical_scores(history_csv, tmp_path):
    src = history_csv(bad_rows=False)
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(["backfill", str(src), "--model", "vae", "--output-dir", str(a),
                    "--epochs", "1", *FAST]) == 0  # fmt: skip
    assert run_cli(["backfill", str(src), "--model", "vae", "--output-dir", str(b),
                    "--checkpoint-in", str(a / "checkpoint.pt"), *FAST]) == 0  # fmt: skip
    assert _rows(a / "scores.csv") == _rows(b / "scores.csv")
    assert run_cli(["backfill", str(src), "--model", "gan", "--output-dir", str(b),
                    "--checkpoint-in", str(a / "checkpoint.pt"), *FAST]) == 2  # fmt: skip


def test_backfill_bad_arguments_exit_2(history_csv, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert run_cli(["backfill", str(tmp_path / "missing.csv"), "--model", "vae",
                    "--output-dir", out]) == 2  # fmt: skip
    assert run_cli(["backfill", str(history_csv()), "--model", "vae", "--output-dir", out,
                    "--epochs", "-1"]) == 2  # fmt: skip
    assert run_cli(["backfill", str(history_csv()), "--model", "vae", "--output-dir", out,
                    "--set", "window.length=1"]) == 2  # fmt: skip
    with pytest.raises(SystemExit) as exc:  # argparse: not one of the choices
        run_cli(["backfill", str(history_csv()), "--model", "vae", "--output-dir", out,
                 "--vae-sample", "nearest"])  # fmt: skip
    assert exc.value.code == 2


def test_evaluate_generated_from_files_and_model(history_csv, tmp_path, capsys):
    out = tmp_path / "q"
    assert run_cli(["evaluate-generated", "--model", "vae", "--input", "sines", "--n", "64",
                    "--seq-len", "8", "--epochs", "1", "--iterations", "5", "--no-progress",
                    "--long-judge", "6", "--set", "model.hidden=8",
                    "--output-dir", str(out)]) == 0  # fmt: skip
    assert "trained vae for 1 epochs" in (text := capsys.readouterr().out)
    assert "discriminative_score_long" in text and "patient classifier" in text
    assert "sampled with --vae-sample residual" in text
    metrics = json.loads((out / "quality.json").read_text())
    assert metrics["training"]["epochs_run"] == 1
    assert metrics["long_iterations"] == 6 and 0.0 <= metrics["discriminative_score_long"] <= 0.5
    assert 0.0 <= metrics["discriminative_score"] <= 0.5
    assert (out / "pca.png").is_file() and (out / "quality.json").is_file()
    bf = tmp_path / "bf"
    src = history_csv(bad_rows=False)
    assert run_cli(["backfill", str(src), "--model", "vae", "--output-dir", str(bf),
                    "--epochs", "1", *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    # the backfill folder alone: its synthetic.csv against its history, windows of its length
    synthetic = json.loads((bf / "report.json").read_text())["synthetic"]
    assert synthetic["window_length"] == 16 and synthetic["sampling"] == "residual"
    assert synthetic["closest_ratio"] > 0  # next to held-out windows of the same history
    assert run_cli(["evaluate-generated", "--backfill", str(bf), "--iterations", "5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("206 real vs 8 synthetic windows")  # the history cut into 16 steps
    assert "discriminative_score" in text and "0 = indistinguishable, 0.5 = always told apart" in text
    assert "predictive_score_real" in text and "the reference" in text
    # the synthetic file with the history: the window length comes from the synthetic windows
    assert run_cli(["evaluate-generated", "--real", str(src), "--synthetic",
                    str(bf / "synthetic.csv"), "--iterations", "5"]) == 0  # fmt: skip
    assert "vs 8 synthetic windows" in capsys.readouterr().out
    # a length that does not match: the message names the fix
    assert run_cli(["evaluate-generated", "--real", str(src), "--synthetic",
                    str(bf / "synthetic.csv"), "--seq-len", "24", "--iterations", "5"]) == 2  # fmt: skip
    assert "give --seq-len 16" in capsys.readouterr().err
    assert run_cli(["evaluate-generated", "--real", "sines"]) == 2
    assert run_cli(["evaluate-generated", "--backfill", str(bf), "--long-judge", "-1"]) == 2


def test_step_budget_only_for_default_epochs_and_steps():
    from streamgen.cli import build_parser
    from streamgen.commands.backfill import _train_config
    from streamgen.config import PipelineConfig

    def budget(*extra: str) -> int:
        argv = ["backfill", "h.csv", "--model", "vae", "--output-dir", "o", *extra]
        return _train_config(build_parser("backfill").parse_args(argv),
                             PipelineConfig().model).min_steps

    assert budget() == 1800  # 30 epochs x 60 batches: what a long history trains
    assert budget("--epochs", "5") == 0
    assert budget("--steps-per-epoch", "3") == 0  # not 600 epochs of 3 batches
