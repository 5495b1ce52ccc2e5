"""Fuzzing the input path (issue #6): the decoder, the engine and ``streamgen score`` take
any bytes, any JSON, any CSV cell, and never raise. Every input yields exactly one output
row, in input order; a bad one carries its reason in ``error`` and no score; every score is
finite. A bad setting exits 2 with one line that names the field.

Hypothesis drives the inputs: malformed and truncated JSON, wrong types, NaN/±inf (as JSON
``NaN``/``Infinity`` and as text), huge numbers, oversized messages, timestamps far in the
past or future, duplicates and records out of order. Example counts are kept small so that
the whole file runs in well under 30 s.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgen.config import DecodeConfig, PipelineConfig, apply_overrides
from streamgen.core.decode import Decoder
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.io.files import ListSink
from streamgen.records import DeadLetter, Position, Record

pytestmark = pytest.mark.reliability

T0 = 1_700_000_000  # epoch seconds
# A model small enough to build and train in milliseconds; 256-byte records make
# "oversized" cheap to reach.
TINY = [
    "model.hidden=8",
    "model.latent=2",
    "window.length=4",
    "model.horizon=2",
    "model.warmup_steps=1",
    "model.train_batch=8",
    "model.max_steps_per_batch=2",
    "calibrate.warmup_windows=2",
    "decode.max_record_bytes=256",
    "alerting.enabled=false",
]
FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies --------------------------------------------------------------------------
_numbers = st.one_of(
    st.floats(),  # NaN, ±inf, subnormals, ±1.8e308
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -0.0, 1e30, -1e30, 1.0000001e30, 1e-320, 2**63, -(2**63) - 1]),
)
_texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "NaN",
            "nan",
            "inf",
            "-Infinity",
            "1e999",
            " 3.5 ",
            "",
            "0x10",
            "1_000",
            "١٢",
            "null",
            "true",
        ]
    ),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _texts)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_times = st.one_of(
    st.integers(min_value=T0 - 5, max_value=T0 + 5),  # close together: duplicates, disorder
    st.integers(min_value=-(10**20), max_value=10**20),  # far past and future, s and ms
    st.floats(),
    st.sampled_from(
        [
            "2024-01-01T00:00:00Z",
            "9999-12-31T23:59:59",
            "0001-01-01T00:00:00",
            "1970-01-01 00:00:00+05:00",
            "2024-02-30T00:00:00",
            "yesterday",
            "",
            str(T0),
            f"{T0}.5",
            "1e400",
        ]
    ),
    _json_values,
)
_keys = st.one_of(
    st.sampled_from(["a", "b", "c"]),
    st.text(max_size=8),
    st.none(),
    st.integers(),
    st.just("k" * 600),
)


@st.composite
def _records(draw: st.DrawFn) -> dict[str, object]:
    """A dict shaped like a record, with any field wrong in any way."""
    good = draw(st.booleans())
    rec: dict[str, object] = {}
    if draw(st.integers(0, 9)):  # mostly present
        rec["key"] = draw(st.sampled_from(["a", "b", "c"]) if good else _keys)
    if draw(st.integers(0, 9)):
        ts = draw(st.integers(T0, T0 + 50) if good else _times)
        rec["ts"] = ts
    rec["x"] = draw(st.floats(-1e6, 1e6, allow_nan=False) if good else _json_values)
    if draw(st.integers(0, 3)) == 0:
        name, v = draw(st.sampled_from(["y", "is_anomaly", "extra"])), draw(_json_values)
        rec[name] = v
    return rec


def _encode(rec: object, how: int, rng: np.random.Generator) -> bytes:
    text = json.dumps(rec, default=str)  # json writes NaN / Infinity / -Infinity as such
    if how == 1 and len(text) > 2:  # truncated
        return text[: int(rng.integers(1, len(text)))].encode()
    if how == 2:  # padded past decode.max_record_bytes
        return (
            (text[:-1] + ', "pad": "' + "z" * 300 + '"}').encode()
            if text.endswith("}")
            else text.encode() + b" " * 300
        )
    return text.encode()


@st.composite
def _messages(draw: st.DrawFn) -> list[bytes]:
    """A batch of raw message bodies: mostly record-shaped JSON, some mangled, some noise."""
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            out.append(draw(st.binary(max_size=80)))
        elif kind == 1:
            out.append(json.dumps(draw(_json_values), default=str).encode())
        else:
            out.append(_encode(draw(_records()), int(rng.integers(0, 12)), rng))
    if n > 2 and draw(st.booleans()):  # exact duplicates
        out.insert(int(rng.integers(0, len(out))), out[int(rng.integers(0, len(out)))])
    return out


def _check_row(row: dict[str, object]) -> None:
    if row["error"] is None:
        assert isinstance(row["score"], float) and math.isfinite(row["score"])
        assert isinstance(row["calibrated"], float) and math.isfinite(row["calibrated"])
    else:
        assert isinstance(row["error"], str) and row["error"]
        assert row["score"] is None


# -- the decoder -------------------------------------------------------------------------
def _check_decoded(out: object) -> None:
    if isinstance(out, Record):
        assert out.values.dtype == np.float64 and np.isfinite(out.values).all()
        assert np.abs(out.values).max() <= 1e30 and isinstance(out.ts_ms, int)
        assert abs(out.ts_ms) <= 1e16 and len(out.key) <= 512
    else:
        assert isinstance(out, DeadLetter) and out.reason and isinstance(out.raw, bytes)


@FAST
@given(
    bodies=_messages(),
    kafka_key=st.one_of(st.none(), st.binary(max_size=20)),
    fixed=st.booleans(),
    skew=st.sampled_from([0, 3_600_000]),
)
def test_decoder_takes_any_json_or_bytes(bodies, kafka_key, fixed, skew):
    cfg = DecodeConfig(
        max_record_bytes=256, max_time_skew_ms=skew, value_fields=["x"] if fixed else None
    )
    d = Decoder(cfg)
    for i, body in enumerate(bodies):
        out = d.decode(RawMessage(body, Position("t", 0, i), key=kafka_key))
        _check_decoded(out)
        if len(body) > 256:
            assert isinstance(out, DeadLetter) and "max_record_bytes" in out.reason


@FAST
@given(
    rows=st.lists(
        st.dictionaries(
            st.one_of(st.sampled_from(["key", "timestamp", "ts", "x", "y"]), st.none()),
            st.one_of(_texts, st.lists(st.text(max_size=3), max_size=2)),
            max_size=5,
        ),
        max_size=20,
    )
)
def test_decoder_takes_any_csv_row(rows):
    """CSV rows arrive as mappings of strings (surplus cells under the key None, as a list)."""
    d = Decoder(DecodeConfig())
    for i, row in enumerate(rows):
        _check_decoded(d.decode(RawMessage(row, Position("t", -1, i))))


# -- the engine ---------------------------------------------------------------------------
def _warm_engine(sink: ListSink, dlq: ListSink | None = None, policy: str = "drop") -> Engine:
    """A tiny engine that has seen 60 clean points of keys a, b and c (event times before
    T0), so that fuzzed records meet trained models and warm calibrators."""
    over = [*TINY, f"window.late_policy={policy}", "window.allowed_lateness_ms=2000"]
    eng = Engine(apply_overrides(PipelineConfig(), over), Sinks(scores=sink, dead_letters=dlq))
    clean = [
        RawMessage(
            json.dumps({"key": k, "ts": T0 - 200 + i, "x": math.sin(i / 3)}).encode(),
            Position("warmup", 0, 3 * i + j),
        )
        for i in range(60)
        for j, k in enumerate("abc")
    ]
    for i in range(0, len(clean), 45):
        eng.process(clean[i : i + 45])
    eng.flush_held()
    assert any(r["warm"] for r in sink.rows)
    sink.rows.clear()
    if dlq is not None:
        dlq.rows.clear()
    return eng


@FAST
@given(
    batches=st.lists(_messages(), min_size=1, max_size=4),
    policy=st.sampled_from(["drop", "reorder"]),
)
def test_engine_gives_one_row_per_message_in_order_and_finite_scores(batches, policy):
    sink, dlq = ListSink(), ListSink()
    eng = _warm_engine(sink, dlq, policy)
    off = 0
    for bodies in batches:
        msgs = [RawMessage(b, Position("t", 0, off + i)) for i, b in enumerate(bodies)]
        before = len(sink.rows)
        st_ = eng.process(msgs)
        assert st_.records == len(msgs)
        if policy == "drop":  # one row per message, in input order, at once
            assert [r["offset"] for r in sink.rows[before:]] == [m.position.offset for m in msgs]
        off += len(msgs)
    eng.flush_held()
    # Every message has exactly one row (with reorder, held records come out later).
    assert sorted(r["offset"] for r in sink.rows) == list(range(off))
    for r in sink.rows:
        _check_row(r)
    assert len(dlq.rows) == sum(r["error"] is not None for r in sink.rows)


def test_engine_survives_extreme_but_valid_values():
    """Finite values at the decoder's limit (±1e30), constants and steps keep scores finite,
    on a warm key and on a new one."""
    sink = ListSink()
    eng = _warm_engine(sink)
    vals = [0.0] * 20 + [1e30, -1e30, 1e-300, 5e-324, 1e30] * 6 + [7.0] * 20
    msgs = [
        RawMessage(
            json.dumps({"key": key, "ts": T0 + i, "x": v}).encode(), Position("t", 0, 2 * i + j)
        )
        for i, v in enumerate(vals)
        for j, key in enumerate(("a", "new"))
    ]
    for i in range(0, len(msgs), 7):
        eng.process(msgs[i : i + 7])
    assert len(sink.rows) == len(msgs)
    for r in sink.rows:
        assert r["error"] is None
        _check_row(r)
    assert any(r["warm"] for r in sink.rows)


@pytest.mark.parametrize("label", ["Infinity", '"inf"', '"1e999"', "-Infinity"])
def test_infinite_label_is_dead_lettered(label):
    d = Decoder(DecodeConfig())
    body = f'{{"key": "a", "ts": {T0}, "x": 1.0, "is_anomaly": {label}}}'.encode()
    out = d.decode(RawMessage(body, Position("t", 0, 0)))
    assert isinstance(out, DeadLetter) and "label" in out.reason


@pytest.mark.parametrize("ts", [253_402_300_800_000, 10**15, -62_135_596_801_000, "-1e15"])
def test_time_outside_years_1_to_9999_is_dead_lettered(ts):
    sink = ListSink()
    eng = _warm_engine(sink)
    msgs = [
        RawMessage(json.dumps({"key": "a", "ts": t, "x": 1.0}).encode(), Position("t", 0, i))
        for i, t in enumerate([T0, ts, T0 + 1])
    ]
    eng.process(msgs)
    assert [r["offset"] for r in sink.rows] == [0, 1, 2]
    assert sink.rows[1]["error"] and sink.rows[0]["error"] is None


# -- streamgen score --------------------------------------------------------------------
def _write_lines(path, bodies: list[bytes]) -> int:
    """JSONL input: one line per body (newlines inside a body are replaced by spaces)."""
    lines = [b.replace(b"\n", b" ").replace(b"\r", b" ") for b in bodies]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(bodies=_messages(), out_ext=st.sampled_from(["jsonl", "csv"]))
def test_score_command_writes_one_row_per_input_line(tmp_path_factory, bodies, out_ext):
    from streamgen.cli import main

    d = tmp_path_factory.mktemp("fuzz")
    src, out = d / "in.jsonl", d / f"out.{out_ext}"
    n = _write_lines(src, bodies)
    args = ["score", str(src), "-o", str(out), "--no-progress"]
    rc = main(args + [a for o in TINY for a in ("--set", o)])
    if out_ext == "jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
    else:
        with open(out, newline="") as fh:
            rows = list(csv.DictReader(fh))
    # Exit 1 when no row at all could be decoded (documented), else 0.
    assert rc == (1 if n and all(r["error"] not in (None, "") for r in rows) else 0)
    assert len(rows) == n
    assert [int(r["offset"]) for r in rows] == list(range(n))
    for r in rows:
        if r["error"] in (None, ""):
            assert math.isfinite(float(r["score"]))
        else:
            assert r["score"] in (None, "")


@pytest.mark.parametrize("name", ["in.jsonl", "in.csv"])
def test_score_command_survives_bytes_that_are_not_utf8(tmp_path, name):
    from streamgen.cli import main

    src, out = tmp_path / name, tmp_path / "out.jsonl"
    if name.endswith(".jsonl"):
        src.write_bytes(
            b'\x80\n{"key": "a\xff", "ts": 1700000000, "x": 1}\n'
            b'{"key": "a", "ts": 1700000001, "x": 2}\n'
        )
    else:
        src.write_bytes(b"key,timestamp,x\na\xff,1700000000,1\nb,1700000001,2\n")
    assert main(["score", str(src), "-o", str(out), "--no-progress"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) in (2, 3)
    for r in rows:
        _check_row(r)


def test_score_command_csv_input_with_garbage_cells(tmp_path):
    from streamgen.cli import main

    src, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    good = [f"a,{T0 + i},{i % 5}" for i in range(30)]
    bad = [
        "a,,1",
        "a,not-a-time,1",
        f"a,{T0 + 40},NaN",
        f"a,{T0 + 41},inf",
        f"a,{T0 + 42},1e999",
        f"a,{T0 + 43},",
        f"a,{T0 + 44},1,surplus",
        f"a,{T0 - 10**9},1",
        f"a,{T0 + 10**12},1",
        f"a,{T0 + 20},1",
        "a",
        '"a,1',
        ",,,,",
    ]
    lines = ["key,timestamp,x", *good[:15], *bad, *good[15:]]
    src.write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "score",
                str(src),
                "-o",
                str(out),
                "--no-progress",
                *[a for o in TINY for a in ("--set", o)],
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    with open(src, newline="") as fh:
        n_in = len(list(csv.DictReader(fh)))
    assert len(rows) == n_in
    for r in rows:
        _check_row(r)
    assert sum(r["error"] is not None for r in rows) >= 10


# -- config errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("how", "value", "field"),
    [
        ("set", "calibrate.threshold=-1", "calibrate.threshold"),
        ("set", "calibrate.method=median", "calibrate.method"),
        ("set", "batch.max_records=zero", "batch.max_records"),
        ("set", "decode.max_record_bytes=1", "decode.max_record_bytes"),
        ("set", "window.late_policy=later", "window.late_policy"),
        ("set", "model.seed=1.5", "model.seed"),
        ("set", "nosuch.section=1", "nosuch.section"),
        ("set", "model", "model"),  # no "=": names what it got
        ("pipeline", "window:\n  length: 1\n", "window.length"),
        ("pipeline", "model:\n  bogus: 3\n", "model.bogus"),
        ("pipeline", "calibrate:\n  quantile: 2\n", "calibrate.quantile"),
        ("pipeline", "alerting:\n  min_count: 5\n  within: 2\n", "alerting"),
        ("pipeline", "- just\n- a list\n", "pipeline"),
        ("pipeline", "window: [unclosed\n", "pipeline"),
    ],
)
def test_score_config_errors_exit_2_naming_the_field(tmp_path, capsys, how, value, field):
    from streamgen.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"key": "a", "ts": T0, "x": 1.0}) + "\n")
    args = ["score", str(src), "-o", str(tmp_path / "o.jsonl")]
    if how == "set":
        args += ["--set", value]
    else:
        (tmp_path / "p.yaml").write_text(value)
        args += ["--pipeline", str(tmp_path / "p.yaml")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and field in err, err
    assert not (tmp_path / "o.jsonl").exists()  # nothing ran


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(_texts, st.sampled_from(["-1", "0", "1e9", "[1, 2]", "{a: 1}", "~"])))
def test_any_bad_window_length_is_a_config_error_naming_the_field(value):
    """``--set window.length=<anything>``: valid, or ConfigError naming window.length."""
    from streamgen.errors import ConfigError

    try:
        cfg = apply_overrides(PipelineConfig(), [f"window.length={value}"])
    except ConfigError as exc:
        assert str(exc).startswith("window.length") and "\n" not in str(exc)
    else:
        assert 2 <= cfg.window.length <= 4096


# Bytes of CSV files as hostile as framing gets: quotes that never close, separators inside
# and outside quotes, CR, LF and CRLF, a byte-order mark, bytes that are not UTF-8, long cells.
_CSV_PIECES = st.sampled_from([
    b",", b'"', b'""', b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xff", b"\x00", b"1", b"2.5",
    b"1700000000", b"a", b"-", b"nan", b" ", b"x" * 300,
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(_CSV_PIECES, max_size=80), truncate=st.booleans(), gz=st.booleans())
def test_file_reader_never_raises_and_the_score_command_keeps_the_row_contract(
    tmp_path_factory, body, truncate, gz
):
    import gzip

    from streamgen.cli import main
    from streamgen.core.ports import Unreadable
    from streamgen.io.files import read_raw

    d = tmp_path_factory.mktemp("csvfuzz")
    data = b"key,timestamp,x\n" + b"".join(body)
    src = d / ("in.csv.gz" if gz else "in.csv")
    blob = gzip.compress(data) if gz else data
    if truncate and gz:
        blob = blob[: max(10, len(blob) // 2)]
    src.write_bytes(blob)
    msgs = list(read_raw(src, max_record_bytes=256))  # never raises (256: TINY's bound)
    for m in msgs:
        assert isinstance(m.value, dict | Unreadable)
    assert [m.position.offset for m in msgs] == list(range(len(msgs)))
    out = d / "out.csv"
    rc = main(["score", str(src), "-o", str(out), "--no-progress",
               *[a for o in TINY for a in ("--set", o)]])
    assert rc in (0, 1)  # 1: a truncated file, or nothing decodable (both documented)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(msgs)  # one output row per record read, in order
    assert [int(r["offset"]) for r in rows] == list(range(len(msgs)))
    for r, m in zip(rows, msgs, strict=True):
        if isinstance(m.value, Unreadable):
            assert r["error"] and r["score"] == ""
        elif r["error"] == "":
            assert math.isfinite(float(r["score"]))
