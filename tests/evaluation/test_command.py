"""``streamgen evaluate`` end to end on small temporary CSV and JSONL files."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from streamgen.commands.evaluate import register, run
from streamgen.core.decode import parse_time_ms as to_ms
from streamgen.errors import DecodeError
from streamgen.evaluation import report as report_module
from streamgen.evaluation.detection import best_f1, roc_auc

T0 = 1_700_000_000_000  # ms
N = 80
PERIOD = 8
# Raw-score scale per key: beta's raw scores dwarf alpha's, as a model's raw error differs
# between keys; the per-key calibrated score undoes it, so the two columns rank differently.
RAW_SCALE = {"alpha": 1.0, "beta": 50.0}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_data():
    """Two keys, period-8 sine, one labelled burst each; calibrated scores from the true
    residual, raw scores the same times a per-key scale (so pooled they rank worse)."""
    rng = np.random.default_rng(0)
    out = {}
    for j, key in enumerate(["alpha", "beta"]):
        t = np.arange(N)
        base = np.sin(2 * np.pi * t / PERIOD)
        y = np.zeros(N, int)
        y[30 + 10 * j : 36 + 10 * j] = 1
        x = base + 0.05 * rng.normal(size=N) + 2.0 * y
        calibrated = np.abs(x - base) + 0.02 * rng.random(N)
        calibrated[[3, 50]] = np.nan  # dead-lettered rows
        out[key] = {
            "ts": T0 + t * 60_000, "x": x, "y": y, "base": base,
            "calibrated": calibrated, "score": RAW_SCALE[key] * calibrated,
        }  # fmt: skip
    return out


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score_rows(data, as_json: bool) -> list[dict]:
    rows = []
    for key, d in data.items():
        for i in range(N):
            c = d["calibrated"][i]
            dead = bool(np.isnan(c))
            flagged = bool((not dead) and c >= 1.0)
            rows.append(
                {
                    "key": key,
                    "timestamp": iso(int(d["ts"][i])) if as_json else int(d["ts"][i]),
                    "score": None if dead else float(d["score"][i]),
                    "calibrated": None if dead else float(c),
                    "threshold": 1.0,
                    "is_anomaly": flagged if as_json else str(flagged).lower(),
                    "warm": (i >= 10) if as_json else str(i >= 10).lower(),
                    "error": "decode" if dead else None,
                }
            )
    if not as_json:
        for r in rows:
            r.update({k: "" for k, v in r.items() if v is None})
    return rows


def label_rows(data, with_key: bool = True, seconds: bool = False) -> list[dict]:
    rows = []
    for key, d in data.items():
        for i in range(N):
            ts = int(d["ts"][i]) // 1000 if seconds else int(d["ts"][i])
            row = {"timestamp": ts, "is_anomaly": int(d["y"][i])}
            if with_key:
                row["key"] = key
            rows.append(row)
    return rows


def input_rows(data, as_json: bool) -> list[dict]:
    rows = []
    for key, d in data.items():
        for i in range(N):
            ts = int(d["ts"][i])
            if as_json:
                rows.append({"ts": iso(ts), "key": key, "v": float(d["x"][i]), "host": "h1"})
            else:
                rows.append({"timestamp": ts, "key": key, "v": f"{d['x'][i]:.6f}"})
    return rows


def continuation_rows(data, as_json: bool, horizon: int = 4) -> list[dict]:
    rows = []
    for key, d in data.items():
        for i in range(PERIOD, N - horizon, 10):
            fc = [[float(d["base"][(i + h) % N])] for h in range(1, horizon + 1)]
            ts = int(d["ts"][i])
            rows.append(
                {
                    "key": key,
                    "ts": ts,
                    "horizon": horizon,
                    "forecast": fc if as_json else json.dumps(fc),
                }
            )
    return rows


def invoke(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamgen")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["evaluate", *argv])
    assert args.func is run
    return run(args)


@pytest.fixture
def csv_files(tmp_path):
    data = make_data()
    return data, {
        "scores": write_csv(tmp_path / "scores.csv", score_rows(data, False)),
        "labels": write_csv(tmp_path / "labels.csv", label_rows(data)),
        "actual": write_csv(tmp_path / "input.csv", input_rows(data, False)),
        "conts": write_csv(tmp_path / "conts.csv", continuation_rows(data, False)),
    }


def expected_roc(data, warm_only: bool = False, column: str = "calibrated") -> float:
    s = np.concatenate([d[column][10:] if warm_only else d[column] for d in data.values()])
    y = np.concatenate([d["y"][10:] if warm_only else d["y"] for d in data.values()])
    return roc_auc(s, y)


def test_fixture_columns_rank_differently():
    """Guard for the tests below: they can tell which column was ranked only if the two
    columns give different metrics."""
    data = make_data()
    assert expected_roc(data) > expected_roc(data, column="score") + 0.05
    assert expected_roc(data, True) > expected_roc(data, True, column="score") + 0.05


def test_csv_end_to_end_json(csv_files, capsys):
    data, f = csv_files
    rc = invoke(
        [
            "--scores", str(f["scores"]),
            "--labels", str(f["labels"]),
            "--continuations", str(f["conts"]),
            "--actual", str(f["actual"]),
            "--json",
        ]
    )  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    det = out["detection"]
    assert det["score_column"] == "calibrated"  # the default
    assert det["alert_threshold"] == 1.0  # the threshold column: on the calibrated scale
    assert det["warnings"] == []
    assert det["n_keys"] == 2
    assert det["labels"]["join"] == "key+timestamp"
    assert det["labels"]["n_score_rows_matched"] == 2 * N
    allrows = det["all"]
    assert allrows["n_rows"] == 2 * N
    assert allrows["n_excluded_nonfinite"] == 4
    assert allrows["n_segments"] == 2
    assert allrows["model"]["roc_auc"] == pytest.approx(expected_roc(data))
    assert allrows["model"]["roc_auc"] > allrows["random"]["roc_auc"]["mean"]
    assert allrows["random_seeds"] == 10
    assert allrows["model"]["nab_score"] is not None
    warm = det["warm"]
    assert warm["n_rows"] == 2 * (N - 10)
    assert warm["model"]["roc_auc"] == pytest.approx(expected_roc(data, warm_only=True))
    assert set(det["per_key"]) == {"alpha", "beta"}
    fc = out["forecast"]
    assert fc["n_joined"] == len(continuation_rows(data, False))
    assert fc["periods"] == {"alpha": PERIOD, "beta": PERIOD}
    # continuations made at warm rows (row >= 10): rows 18, 28, ..., 68 of each key
    assert fc["warm"]["n_joined"] == 2 * len(range(18, N - 4, 10))
    # forecasts are the noise-free sine: far better than naive except in labelled bursts
    assert fc["model"]["mae"] < fc["last_value"]["mae"]
    assert fc["ratio_mae"] == pytest.approx(
        fc["model"]["mae"] / min(fc["last_value"]["mae"], fc["seasonal_naive"]["mae"])
    )


def evaluate_json(f, capsys, *extra: str) -> dict:
    assert (
        invoke(["--scores", str(f["scores"]), "--labels", str(f["labels"]), "--json", *extra]) == 0
    )
    return json.loads(capsys.readouterr().out)["detection"]


def test_default_ranks_calibrated_and_score_column_score_ranks_raw(csv_files, capsys):
    """Every column-dependent figure follows the ranked column; the baseline does not."""
    data, f = csv_files
    default = evaluate_json(f, capsys)
    explicit = evaluate_json(f, capsys, "--score-column", "calibrated")
    raw = evaluate_json(f, capsys, "--score-column", "score")
    assert explicit == default
    assert (default["score_column"], raw["score_column"]) == ("calibrated", "score")
    assert (default["alert_threshold"], raw["alert_threshold"]) == (1.0, None)
    for det, column in ((default, "calibrated"), (raw, "score")):
        assert det["all"]["model"]["roc_auc"] == pytest.approx(expected_roc(data, column=column))
        assert det["warm"]["model"]["roc_auc"] == pytest.approx(
            expected_roc(data, warm_only=True, column=column)
        )
        s = np.concatenate([d[column] for d in data.values()])
        y = np.concatenate([d["y"] for d in data.values()])
        best = best_f1(s, y)  # the oracle threshold is on the ranked column's scale
        assert det["all"]["model"]["f1_best"] == pytest.approx(best.f1)
        assert det["all"]["model"]["f1_best_threshold"] == pytest.approx(best.threshold)
    assert (
        default["all"]["model"]["f1_best_threshold"]
        < 5.0
        < raw["all"]["model"]["f1_best_threshold"]
    )
    # same rows either way (dead letters are empty in both columns): same labels, same
    # random baseline, same binary detector metrics (from is_anomaly, not the ranked column)
    for block in ("all", "warm"):
        assert default[block]["random"] == raw[block]["random"]
        for name in ("n_scored", "n_excluded_nonfinite", "n_positive", "n_flagged"):
            assert default[block][name] == raw[block][name]
        assert default[block]["model"]["nab_score"] == raw[block]["model"]["nab_score"]
    assert default["all"]["n_excluded_nonfinite"] == 4
    assert default["warm"]["n_rows"] == 2 * (N - 10)


def test_report_plots_threshold_only_on_the_calibrated_scale(csv_files, tmp_path, monkeypatch):
    """The ranked column is the top panel; the threshold line goes with ``calibrated`` only,
    whichever column is ranked, and the metrics file names the column."""
    data, f = csv_files
    seen: list = []
    original = report_module._plot_score

    def spy(path, ks, title):
        seen.append(ks)
        return original(path, ks, title)

    monkeypatch.setattr(report_module, "_plot_score", spy)
    for extra, ranked, other in (
        ([], "calibrated", "score"),
        (["--score-column", "score"], "score", "calibrated"),
    ):
        seen.clear()
        out = tmp_path / ranked
        argv = ["--scores", str(f["scores"]), "--labels", str(f["labels"]), "--report", str(out)]
        assert invoke([*argv, *extra]) == 0
        assert json.loads((out / "metrics.json").read_text())["detection"]["score_column"] == (
            ranked
        )
        assert len(seen) == 2 and len(list(out.glob("score_*.png"))) == 2
        for ks in seen:
            panels = report_module._score_panels(ks)
            assert [name for name, _, _ in panels] == [ranked, other]
            by_name = {name: (values, thr) for name, values, thr in panels}
            assert by_name["score"][1] is None  # the raw score has no threshold
            thr = by_name["calibrated"][1]
            assert thr is not None and np.nanmax(np.abs(thr - 1.0)) == 0.0
            for name in ("calibrated", "score"):
                np.testing.assert_allclose(by_name[name][0], data[ks.key][name])
            np.testing.assert_allclose(ks.score, data[ks.key][ranked])


def test_report_panels_of_files_without_calibrated_values():
    """A file without a calibrated column keeps the threshold on its score (nothing else it
    can refer to); a custom ranked column never gets it."""
    ts, s, thr = np.arange(4), np.arange(4.0), np.full(4, 2.0)
    ks = report_module.KeySeries("k", ts, s, thr, score_column="score", raw_score=s)
    assert [(n, t is thr) for n, _, t in report_module._score_panels(ks)] == [("score", True)]
    ks = report_module.KeySeries("k", ts, s, thr, score_column="custom", raw_score=s + 1)
    assert [(n, t is thr) for n, _, t in report_module._score_panels(ks)] == [
        ("custom", False),
        ("score", True),
    ]
    nan = np.full(4, np.nan)  # a calibrated column without values: no panel, no threshold
    ks = report_module.KeySeries("k", ts, s, thr, nan, score_column="score", raw_score=s)
    assert [(n, t is thr) for n, _, t in report_module._score_panels(ks)] == [("score", False)]


def test_help_names_calibrated_as_default():
    parser = argparse.ArgumentParser(prog="streamgen")
    sub = parser.add_subparsers(dest="command", required=True)
    text = " ".join(register(sub).format_help().split())
    assert "--score-column COL" in text
    assert "(default: calibrated," in text and "'raw_score' ranks by the model's raw error" in text


def test_jsonl_inputs_iso_timestamps_and_report(tmp_path, capsys):
    data = make_data()
    scores = write_jsonl(tmp_path / "scores.jsonl", score_rows(data, True))
    # labels in epoch seconds, no key column: joined on timestamp for every key
    labels = write_csv(tmp_path / "labels.csv", label_rows(data, with_key=False, seconds=True))
    actual = write_jsonl(tmp_path / "input.jsonl", input_rows(data, True))
    conts = write_jsonl(tmp_path / "conts.jsonl", continuation_rows(data, True))
    report = tmp_path / "report"
    argv = [
        "--scores", str(scores),
        "--labels", str(labels),
        "--continuations", str(conts),
        "--actual", str(actual),
        "--report", str(report),
    ]  # fmt: skip
    rc = invoke(argv)
    assert rc == 0
    text = capsys.readouterr().out
    # the default view: five summary lines, then the forecast, then where the report is
    summary = text[text.index("summary:"):].splitlines()[1:6]
    assert [line.split()[0] for line in summary] == [
        "segments", "PR-AUC", "ROC-AUC", "false", "median"]  # fmt: skip
    # the union of both bursts on both keys: 4 segments, the other key's burst missed once
    assert "segments detected      3 / 4 (75 %)" in summary[0]
    assert "random scores get the label rate, 0.154 (24 of 156 rows)" in summary[1]
    assert "0 in 79.0 min = 0.0 per day" in summary[3]
    assert "0.0 s (0 rows)" in summary[4]
    assert "ranked by column 'calibrated'" in text
    assert "ratio model/best naive" in text
    assert "warm rows only" not in text and "ttd_" not in text  # the full table: --verbose
    assert f"report: {report}/metrics.json (every metric) and 5 plots in {report}" in text
    assert "plots show all 2 keys" in text and "--verbose" in text
    metrics = json.loads((report / "metrics.json").read_text())  # strict JSON: no NaN
    det = metrics["detection"]
    assert set(det) >= {"summary", "all", "warm", "per_key", "labels", "score_column"}
    assert det["summary"]["segments"] == 4 and det["summary"]["segments_detected"] == 3
    assert det["summary"]["pr_auc"] == det["all"]["model"]["pr_auc"]
    assert {"ttd_median_rows", "ttd_median_seconds"} <= set(det["all"]["model"])
    assert metrics["forecast"]["warm"] is not None
    assert metrics["report"]["keys_plotted"] == ["alpha", "beta"]
    assert len(metrics["report"]["plots"]) == 5
    assert invoke([*argv, "--verbose"]) == 0
    text = capsys.readouterr().out
    assert "roc_auc" in text and "random" in text and "warm rows only" in text
    assert "alert threshold on this scale: 1.0000" in text
    # a delay in seconds and the same in rows: the seconds only
    assert "ttd_median_seconds" in text and "ttd_median_rows" not in text
    assert metrics["detection"]["labels"]["join"] == "timestamp"
    # both keys share timestamps, so each label row applies to both keys: the union of bursts
    y_union = np.maximum(data["alpha"]["y"], data["beta"]["y"])
    s = np.concatenate([data["alpha"]["calibrated"], data["beta"]["calibrated"]])
    assert metrics["detection"]["score_column"] == "calibrated"
    assert metrics["detection"]["all"]["model"]["roc_auc"] == pytest.approx(
        roc_auc(s, np.concatenate([y_union, y_union]))
    )
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert "continuations.png" in pngs
    assert sum(n.startswith("series_") for n in pngs) == 2
    assert sum(n.startswith("score_") for n in pngs) == 2
    for name in pngs:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["forecast"]["channels"] == 1  # 'host' (text) is not a value column


def test_scores_only_report_without_actual(csv_files, tmp_path, capsys):
    _, f = csv_files
    report = tmp_path / "r2"
    rc = invoke(
        ["--scores", str(f["scores"]), "--labels", str(f["labels"]), "--report", str(report)]
    )
    assert rc == 0
    assert (report / "metrics.json").exists()
    assert len(list(report.glob("*.png"))) == 4
    assert json.loads((report / "metrics.json").read_text())["forecast"] is None


def test_forecast_only(csv_files, capsys):
    _, f = csv_files
    rc = invoke(["--continuations", str(f["conts"]), "--actual", str(f["actual"]), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detection"] is None and out["forecast"]["n_points"] > 0


def test_scores_without_optional_columns(tmp_path, capsys):
    rows = [{"timestamp": T0 + i * 1000, "score": i % 5} for i in range(30)]
    scores = write_csv(tmp_path / "s.csv", rows)
    labels = write_csv(tmp_path / "l.csv", [{"timestamp": T0 + 4000, "is_anomaly": 1}])
    assert invoke(["--scores", str(scores), "--labels", str(labels), "--json"]) == 0
    captured = capsys.readouterr()
    det = json.loads(captured.out)["detection"]
    # no calibrated column (another tool's file): the default falls back to score, visibly
    assert det["score_column"] == "score" and det["alert_threshold"] is None
    assert len(det["warnings"]) == 1 and "no 'calibrated' values" in det["warnings"][0]
    assert "warning: no 'calibrated' values: ranking the raw 'score'" in captured.err
    assert det["warm"] is None
    assert "nab_score" not in det["all"]["model"]  # no is_anomaly column
    assert det["labels"]["n_score_rows_matched"] == 1
    # ... but never when the column is asked for
    assert invoke(["--scores", str(scores), "--labels", str(labels), "--score-column",
                   "calibrated"]) == 2  # fmt: skip
    assert "no 'calibrated' column" in capsys.readouterr().err


def test_empty_calibrated_column_falls_back_to_score(tmp_path, capsys):
    rows = [{"timestamp": T0 + i * 1000, "score": i % 5, "calibrated": ""} for i in range(30)]
    scores = write_csv(tmp_path / "s.csv", rows)
    labels = write_csv(tmp_path / "l.csv", [{"timestamp": T0 + 4000, "is_anomaly": 1}])
    assert invoke(["--scores", str(scores), "--labels", str(labels), "--json"]) == 0
    det = json.loads(capsys.readouterr().out)["detection"]
    assert det["score_column"] == "score" and det["all"]["n_scored"] == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scores", "{scores}"], "--labels is required"),
        (["--labels", "{labels}"], "--labels needs --scores"),
        (["--continuations", "{conts}"], "--continuations needs --actual"),
        ([], "nothing to evaluate"),
        (["--scores", "{missing}", "--labels", "{labels}"], "cannot read"),
        (["--scores", "{labels}", "--labels", "{labels}"], "no 'calibrated' column"),
        (
            ["--scores", "{labels}", "--labels", "{labels}", "--score-column", "score"],
            "no 'score' column",
        ),
        (
            ["--scores", "{scores}", "--labels", "{labels}", "--score-column", "nope"],
            "no 'nope' column",
        ),
        (["--scores", "{scores}", "--labels", "{labels}", "--seeds", "1"], "--seeds"),
        (["--scores", "{scores}", "--labels", "{bad_ts}"], "cannot parse timestamp"),
        (["--continuations", "{bad_conts}", "--actual", "{actual}"], "channels"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(csv_files, tmp_path, capsys, argv, message):
    _, f = csv_files
    bad_ts = write_csv(tmp_path / "bad_ts.csv", [{"timestamp": "yesterday", "is_anomaly": 1}])
    bad_conts = write_csv(
        tmp_path / "bad_conts.csv",
        [{"key": "alpha", "ts": T0, "horizon": 1, "forecast": "[[1.0, 2.0]]"}],
    )
    paths = {
        "scores": f["scores"],
        "labels": f["labels"],
        "conts": f["conts"],
        "actual": f["actual"],
        "missing": tmp_path / "nope.csv",
        "bad_ts": bad_ts,
        "bad_conts": bad_conts,
    }
    rc = invoke([a.format(**paths) for a in argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamgen evaluate: error:")
    assert message in err


def test_to_ms_formats():
    assert to_ms("2023-11-14T22:13:20Z") == T0
    assert to_ms("2023-11-14T22:13:20+00:00") == T0
    assert to_ms("2023-11-14 22:13:20") == T0  # naive: UTC
    assert to_ms(T0 / 1000) == T0  # seconds
    assert to_ms(str(T0)) == T0  # ms as text
    assert to_ms("1700000000.5") == T0 + 500
    for bad in ("", "nan", None, True):
        with pytest.raises(DecodeError):
            to_ms(bad)
    assert not math.isnan(to_ms(0))


def test_engine_format_dead_letters_label_column_gz_and_channels(tmp_path, capsys):
    """Files shaped like the engine's output: SCORE_COLUMNS, ISO ``+00:00`` timestamps,
    ``ts_ms``, a dead letter without key or time, the carried-through ``label`` column, and
    continuation rows naming their channels; the input has no key column and is gzipped."""
    n = 40
    y = np.zeros(n, int)
    y[20:24] = 1
    x = np.sin(np.arange(n) / 3.0) + 3.0 * y
    scores = []
    for i in range(n):
        ms = T0 + i * 1000
        ts = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
        s = float(abs(x[i] - np.sin(i / 3.0)))
        scores.append(
            {"key": "default", "timestamp": ts, "ts_ms": ms, "score": repr(s),
             "calibrated": repr(s), "threshold": "1.0", "is_anomaly": str(s > 1).lower(),
             "warm": "true", "error": "", "model": "sota", "label": int(y[i])}
        )  # fmt: skip
    scores.insert(
        5,
        {"key": "", "timestamp": "", "ts_ms": "", "score": "", "calibrated": "",
         "threshold": "1.0", "is_anomaly": "false", "warm": "false",
         "error": "not valid JSON", "model": "sota", "label": ""},
    )  # fmt: skip
    scores[7]["score"] = "np.float64(0.5)"  # as numpy-2 repr() writes it: plots only
    score_path = write_csv(tmp_path / "out.csv", scores)
    raw = [
        {"timestamp": T0 // 1000 + i, "v": f"{x[i]:.6f}", "note": "ok", "extra": 7}
        for i in range(n)
    ]
    raw[30]["v"] = "oops"  # dead-lettered by the decoder: skipped, not an error
    plain = write_csv(tmp_path / "input.csv", raw)
    gz = tmp_path / "input.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    conts = [
        {"key": "default", "ts": "x", "ts_ms": T0 + i * 1000, "horizon": 2,
         "channels": '["v"]', "forecast": json.dumps([[float(x[i + 1])], [float(x[i + 2])]]),
         "model": "sota"}
        for i in range(5, 35, 5)
    ]  # fmt: skip
    cont_path = write_csv(tmp_path / "conts.csv", conts)
    rc = invoke(
        ["--scores", str(score_path), "--continuations", str(cont_path), "--actual", str(gz),
         "--json", "--period", "1"]
    )  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    det = out["detection"]
    assert det["labels"]["join"] == "label column of --scores"
    assert det["score_column"] == "calibrated"
    assert "warning: 1 unparsable 'score' cells" in captured.err
    assert det["all"]["n_rows"] == n + 1 and det["all"]["n_excluded_nonfinite"] == 1
    assert det["all"]["model"]["roc_auc"] == 1.0
    assert list(det["per_key"]) == ["default"]  # the key-less dead letter is not a key
    assert len(det["warnings"]) == 1 and "'score'" in det["warnings"][0]
    fc = out["forecast"]
    assert fc["actual_input"]["channels"] == ["v"]  # 'extra' is numeric but not a channel
    assert fc["actual_input"]["n_rows_skipped"] == 1
    # forecasts are the exact next values; the one made at row 30 (a skipped row, so it is
    # anchored on row 29) is compared with rows 31, 32: the rows the model saw next
    assert fc["n_joined"] == 6
    assert fc["model"]["mae_by_step"][0] == pytest.approx(0.0, abs=1e-5)
    # the readable table too
    assert invoke(["--scores", str(score_path)]) == 0
    assert "labels: the 'label' column of --scores" in capsys.readouterr().out
    # the ranked column must parse: ranking the raw score trips over that cell
    assert invoke(["--scores", str(score_path), "--score-column", "score"]) == 2
    assert "column 'score' is not a number: 'np.float64(0.5)'" in capsys.readouterr().err


def test_actual_channels_inferred_like_the_decoder(tmp_path, capsys):
    from streamgen.commands.evaluate import read_actual

    rows = [
        {"ts": "bad", "key": "k", "a": 1.0},  # undecodable time: skipped, channels not fixed yet
        {"ts": T0, "key": "k", "a": 1.0, "host": "h", "is_anomaly": 0, "b": 2},
        {"ts": T0 + 1, "key": "k", "a": 2.0, "host": "h", "is_anomaly": 1, "b": None},
        {"ts": T0 + 2, "a": 3.0, "b": 4},  # no key: "default"
    ]
    actuals, info = read_actual(write_jsonl(tmp_path / "in.jsonl", rows))
    assert info["channels"] == ["a", "b"]
    assert info["n_rows_skipped"] == 2  # bad time, missing b
    assert sorted(actuals) == ["default", "k"]
    assert actuals["k"].values.tolist() == [[1.0, 2.0]]


def test_to_ms_agrees_with_the_pipeline_decoder():
    decode = pytest.importorskip("streamgen.core.decode")
    for value in (
        "2023-11-14T22:13:20.123+00:00",
        "2023-11-14 22:13:20",
        "1700000000",
        1_700_000_000.25,
        1_700_000_000_123,
        "1700000000123",
        "1970-01-01T00:00:00.0005",
    ):
        assert to_ms(value) == decode.parse_time_ms(value), value


# --------------------------------------------------------------------------------------------
# continuation spreads
# --------------------------------------------------------------------------------------------


def spread_files(tmp_path: Path, as_json: bool, spreads: list) -> dict[str, Path]:
    """One flat key (six rows of 0, epoch seconds 1..6) and the forecasts of
    ``test_forecast.spread_case``: errors 1, 2 | 0.5, 3 | 0, 0 against spreads 1, 1 |
    0.25, 1 | ``spreads[2]``; naive forecasts are exact, the period is none."""
    actual = write_csv(tmp_path / "flat.csv", [{"timestamp": t, "v": 0.0} for t in range(1, 7)])
    rows = []
    for ts, fc, sp in zip((2, 3, 4), ([1.0, 2.0], [0.5, -3.0], [0.0, 0.0]), spreads, strict=True):
        row = {"key": "a", "ts": ts, "horizon": 2, "forecast": [[v] for v in fc], "spread": sp}
        if not as_json:
            row = {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}
            row["spread"] = "" if sp is None else row["spread"]
        rows.append(row)
    writer = write_jsonl if as_json else write_csv
    return {"actual": actual, "conts": writer(tmp_path / ("c.jsonl" if as_json else "c.csv"), rows)}


@pytest.mark.parametrize("as_json", [False, True])
def test_spread_block_and_printed_coverage(tmp_path, capsys, as_json):
    # the third row has no spread: an empty CSV cell or a JSON null
    f = spread_files(tmp_path, as_json, [[[1.0], [1.0]], [[0.25], [1.0]], None])
    argv = ["--continuations", str(f["conts"]), "--actual", str(f["actual"])]
    assert invoke([*argv, "--json"]) == 0
    fc = json.loads(capsys.readouterr().out)["forecast"]
    assert fc["n_points"] == 6
    sp = fc["spread"]
    assert sp["n_points"] == 4
    assert (sp["coverage_1sd"], sp["coverage_2sd"]) == (0.25, 0.75)
    assert sp["coverage_2sd_by_step"] == [1.0, 0.5]
    assert sp["rmse_over_rms_spread"] == pytest.approx(math.sqrt(14.25 / 3.0625))
    assert invoke(argv) == 0
    text = capsys.readouterr().out
    assert "spread (4 points with one): |error| within 1 spread 25.0 % (nominal 68.3 %)" in text
    assert "within 2 75.0 % (nominal 95.4 %)" in text
    assert "RMSE / RMS spread 2.1571 (nominal 1)" in text


def test_no_spread_block_is_null_and_not_printed(csv_files, tmp_path, capsys):
    _, f = csv_files  # the fixture's continuations carry no spread column
    report = tmp_path / "r"
    argv = ["--continuations", str(f["conts"]), "--actual", str(f["actual"])]
    assert invoke([*argv, "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "ratio model/best naive" in text and "nominal" not in text
    metrics = json.loads((report / "metrics.json").read_text())
    assert "spread" in metrics["forecast"] and metrics["forecast"]["spread"] is None
    # an all-empty spread column is no spread either
    g = spread_files(tmp_path, False, [None, None, None])
    assert invoke(["--continuations", str(g["conts"]), "--actual", str(g["actual"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["forecast"]["spread"] is None


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("[[1.0]]", "c.csv row 2: spread has shape (1, 1) but the forecast (2, 1)"),
        ("[[1.0], [-1.0]]", "c.csv row 2: spread must be finite and >= 0, got -1.0 at step 2"),
        ("[[NaN], [1.0]]", "c.csv row 2: spread must be finite and >= 0, got nan at step 1"),
        ("[[null], [1.0]]", "c.csv row 2: spread must be finite and >= 0, got nan"),
        ('[["x"], [1.0]]', "c.csv row 2: spread is not numbers: [['x'], [1.0]]"),
        ("0.5", "c.csv row 2: spread is not a JSON list"),
        ("[[1.0], [1.0", "c.csv row 2: invalid JSON cell"),
    ],
)
def test_bad_spread_row_is_an_error_naming_the_row(tmp_path, capsys, cell, message):
    """Like a malformed forecast: exit 2 with one line naming the row, no metrics."""
    f = spread_files(tmp_path, False, [[[1.0], [1.0]], [[0.25], [1.0]], None])
    rows = list(csv.DictReader(f["conts"].read_text().splitlines()))
    rows[1]["spread"] = cell
    write_csv(f["conts"], rows)
    rc = invoke(["--continuations", str(f["conts"]), "--actual", str(f["actual"]), "--json"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("streamgen evaluate: error: --continuations: ")
    assert message in captured.err


def test_report_carries_spread_and_shades_two_spreads(tmp_path, capsys, monkeypatch):
    from matplotlib.axes import Axes

    f = spread_files(tmp_path, True, [[[1.0], [1.0]], [[0.25], [1.0]], None])
    bands: list = []
    original = Axes.fill_between

    def spy(self, x, y1, y2=0, **kw):
        bands.append((np.asarray(x).tolist(), np.asarray(y1).tolist(), np.asarray(y2).tolist()))
        return original(self, x, y1, y2, **kw)

    monkeypatch.setattr(Axes, "fill_between", spy)
    report = tmp_path / "r"
    argv = ["--continuations", str(f["conts"]), "--actual", str(f["actual"])]
    assert invoke([*argv, "--report", str(report)]) == 0
    capsys.readouterr()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["forecast"]["spread"]["coverage_2sd"] == 0.75
    png = report / "continuations.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # three windows plotted; the two with a spread get forecast ± 2 spread, the third none:
    # ts 2: forecast [1, 2], spread [1, 1] ; ts 3: forecast [0.5, -3], spread [0.25, 1]
    assert sorted(bands) == [
        ([1, 2], [-1.0, 0.0], [3.0, 4.0]),
        ([1, 2], [0.0, -5.0], [1.0, -1.0]),
    ]
