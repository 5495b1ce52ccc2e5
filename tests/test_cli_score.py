"""`streamgen score` end to end, as a user runs it (a real subprocess)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from streamgen.models.registry import MODEL_NAMES


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half); the evaluation package has the full metric set."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


SMALL = ["--set", "model.hidden=32", "--set", "model.latent=8"]


def _score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamgen", "score", *args], capture_output=True, text=True,
        timeout=300,
    )


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_score_file_one_row_per_input_in_order(stream_file, tmp_path, model):
    src = stream_file("in.csv", n_keys=3, n_points=1200, seed=7)
    lines = src.read_text().splitlines()
    # Inject bad rows: they must keep their place with an empty score and a reason.
    lines.insert(500, "sensor-0,not-a-time,1.0,0")
    lines.insert(900, "sensor-1,1700000999,abc,0")
    src.write_text("\n".join(lines) + "\n")
    out, cont = tmp_path / "out.csv", tmp_path / "cont.jsonl"
    res = _score(str(src), "--model", model, "--output", str(out), "--continuations",
                 str(cont), *SMALL)
    assert res.returncode == 0, res.stderr
    with open(src) as fh:
        inputs = list(csv.DictReader(fh))
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(inputs)
    assert [int(r["offset"]) for r in rows] == list(range(len(inputs)))
    assert rows[499]["score"] == "" and rows[499]["error"].startswith("unparsable time")
    assert rows[899]["score"] == "" and "non-numeric" in rows[899]["error"]
    good = [(r, i) for r, i in zip(rows, inputs, strict=True) if not r["error"]]
    assert all(r["key"] == i["key"] for r, i in good)
    scores = np.array([float(r["score"]) for r, _ in good])
    labels = np.array([int(i["is_anomaly"]) for _, i in good])
    assert np.isfinite(scores).all()
    assert rows[0]["warm"] == "false"
    auc = roc_auc(scores, labels)
    assert auc > 0.6, auc
    first = json.loads(cont.read_text().splitlines()[0])
    assert first["horizon"] == 8 and len(first["forecast"]) == 8


def test_score_jsonl_and_checkpoint_resume(stream_file, tmp_path):
    src = stream_file("in.jsonl", n_keys=2, n_points=400, seed=3)
    lines = src.read_text().splitlines()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(lines[:500]) + "\n")
    b.write_text("\n".join(lines[500:]) + "\n")
    ck = tmp_path / "ck.pt"
    small = [*SMALL, "--set", "batch.max_records=64", "--set", "model.warmup_steps=5"]
    r1 = _score(str(a), "-o", str(tmp_path / "o1.jsonl"), "--checkpoint-out", str(ck), *small)
    assert r1.returncode == 0, r1.stderr
    r2 = _score(str(b), "-o", str(tmp_path / "o2.jsonl"), "--checkpoint-in", str(ck), *small)
    assert r2.returncode == 0, r2.stderr
    rows = [json.loads(x) for x in (tmp_path / "o2.jsonl").read_text().splitlines()]
    assert len(rows) == 300
    assert rows[0]["warm"] is True  # resumed warm: windows, normalizers and model restored
    assert rows[0]["step"] > 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--set", "window.length=1"], "window.length"),
        (["--set", "model.nope=1"], "model.nope"),
        (["--set", "model.optimizer=lbfgs"], "model.optimizer"),
    ],
)
def test_bad_config_exits_2_naming_the_field(stream_file, tmp_path, args, field):
    src = stream_file("in.csv", n_keys=1, n_points=10)
    res = _score(str(src), "-o", str(tmp_path / "o.csv"), *args)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and field in res.stderr


def test_missing_input_and_bad_output_type_exit_2(tmp_path):
    assert _score(str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv")).returncode == 2
    (tmp_path / "in.csv").write_text("timestamp,x\n1,1\n")
    assert _score(str(tmp_path / "in.csv"), "-o", str(tmp_path / "o.parquet")).returncode == 2


def test_colliding_paths_are_refused_before_anything_is_written(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("key,timestamp,x\na,1700000000,1.0\n")
    before = src.read_bytes()
    for flags, named in (
        (["--output", str(src)], "--output"),
        (["--output", str(tmp_path / "o.csv"), "--dead-letters", str(src)], "--dead-letters"),
        (["--output", str(tmp_path / "o.csv"), "--continuations", str(tmp_path / "o.csv")],
         "--output"),
    ):
        res = _score(str(src), *flags)
        assert res.returncode == 2 and named in res.stderr, res.stderr
        assert src.read_bytes() == before
        assert not (tmp_path / "o.csv").exists()
    # Another spelling of the same path is the same file.
    res = _score(str(src), "--output", str(tmp_path / "." / "in.csv"))
    assert res.returncode == 2 and src.read_bytes() == before


def test_byte_order_mark_repeated_header_and_carriage_returns(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfkey,timestamp,x\r\na,1700000000,1.0\r\nb,1700000001,2.0\r\n")
    out = tmp_path / "bom_out.csv"
    assert _score(str(bom), "-o", str(out)).returncode == 0
    with open(out) as fh:
        assert [r["key"] for r in csv.DictReader(fh)] == ["a", "b"]  # not "default"
    dup = tmp_path / "dup.csv"
    dup.write_text("timestamp,x,x\n1700000000,1.0,2.0\n")
    res = _score(str(dup), "-o", str(tmp_path / "dup_out.csv"))
    assert res.returncode == 2 and "repeats column names ['x']" in res.stderr
    assert not (tmp_path / "dup_out.csv").exists()
    # A carriage return inside a JSONL line is data, not a line end: one record, one row.
    cr = tmp_path / "cr.jsonl"
    cr.write_bytes(b'{"ts": 1700000000, "x": 1.0, "note": "a\\rb"}\r\n'
                   b'{"ts": 1700000001, "x": 2.0, "note": "a\rb"}\n'
                   b'{"ts": 1700000002, "x": 3.0}\r\n')
    out = tmp_path / "cr_out.csv"
    assert _score(str(cr), "-o", str(out)).returncode == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert rows[0]["error"] == "" and rows[2]["error"] == ""
    assert rows[1]["error"] == "not valid JSON"  # a raw control character in a JSON string


def test_nothing_decoded_exits_1_naming_the_csv_time_column(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("time,x\n1,2\n3,4\n")
    out = tmp_path / "out.csv"
    res = _score(str(src), "-o", str(out))
    assert res.returncode == 1 and "no row could be decoded" in res.stderr
    with open(out) as fh:
        errors = [r["error"] for r in csv.DictReader(fh)]
    assert errors == ["missing time column timestamp (decode.csv_time_column)"] * 2


def test_an_unterminated_quote_costs_one_row_not_the_rest_of_the_file(stream_file, tmp_path):
    src = stream_file("in.csv", n_keys=2, n_points=400, seed=3)
    lines = src.read_text().splitlines()
    lines.insert(100, 'sensor-0,"1700000099,1.0,0')  # the quote never closes
    lines.insert(300, "sensor-1,1700000299," + "9" * 200_000 + ",0")  # over csv's field limit
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    res = _score(str(src), "-o", str(out), *SMALL)
    assert res.returncode == 0, res.stderr
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(lines) - 1  # every record, in order
    assert rows[99]["error"] == "malformed CSV: a quoted field is never closed"
    assert rows[299]["error"]  # a 200,000-digit number: not finite, dead-lettered
    others = [r for i, r in enumerate(rows) if i not in (99, 299)]
    assert all(r["error"] == "" and np.isfinite(float(r["score"])) for r in others)


def test_a_truncated_gzip_keeps_the_rows_read_and_exits_1(stream_file, tmp_path):
    import gzip

    src = stream_file("in.csv", n_keys=2, n_points=600, seed=4)
    blob = gzip.compress(src.read_bytes())
    gz = tmp_path / "in.csv.gz"
    gz.write_bytes(blob[: len(blob) // 2])
    out = tmp_path / "out.csv"
    res = _score(str(gz), "-o", str(out), *SMALL)
    assert res.returncode == 1 and "input truncated or corrupt" in res.stderr
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert 100 < len(rows) < 1200
    assert rows[-1]["error"].startswith("input truncated or corrupt")
    assert all(r["error"] == "" for r in rows[:-2])  # the last full line may be cut too


def test_checkpoint_errors_name_the_fault_and_the_setting(stream_file, tmp_path):
    src = stream_file("in.csv", n_keys=1, n_points=200, seed=5)
    ck = tmp_path / "ck.pt"
    assert _score(str(src), "-o", str(tmp_path / "a.csv"), "--checkpoint-out", str(ck),
                  *SMALL).returncode == 0
    res = _score(str(src), "-o", str(tmp_path / "b.csv"), "--checkpoint-in", str(src))
    assert res.returncode == 2 and "not a complete checkpoint written by streamgen" in res.stderr
    assert "weights_only" not in res.stderr
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(ck.read_bytes()[:1000])
    res = _score(str(src), "-o", str(tmp_path / "c.csv"), "--checkpoint-in", str(trunc))
    assert res.returncode == 2 and "Errno" not in res.stderr
    res = _score(str(src), "-o", str(tmp_path / "d.csv"), "--checkpoint-in", str(ck), *SMALL,
                 "--set", "window.length=32")
    assert res.returncode == 2 and "window.length: checkpoint 64, pipeline 32" in res.stderr
    # An unwritable checkpoint path fails before the file is scored.
    res = _score(str(src), "-o", str(tmp_path / "e.csv"), "--checkpoint-out",
                 str(src / "ck.pt"))
    assert res.returncode == 2 and "cannot write a checkpoint" in res.stderr
    assert not (tmp_path / "e.csv").exists()
