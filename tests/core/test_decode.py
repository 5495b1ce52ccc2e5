"""Decoding: every bad row goes to the dead-letter output with a reason; good rows decode."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgen.config import DecodeConfig
from streamgen.core.decode import Decoder, parse_time_ms
from streamgen.core.ports import RawMessage
from streamgen.records import DeadLetter, Position, Record


def _msg(value, key=None, off=0):
    return RawMessage(value, Position("t", 0, off), key=key)


def test_time_formats():
    assert parse_time_ms(1_700_000_000) == 1_700_000_000_000
    assert parse_time_ms(1_700_000_000_123) == 1_700_000_000_123
    assert parse_time_ms("2024-01-01T00:00:00Z") == 1_704_067_200_000
    assert parse_time_ms("2024-01-01 00:00:01+00:00") == 1_704_067_201_000
    assert parse_time_ms("1700000000.5") == 1_700_000_000_500


def test_key_precedence_kafka_key_then_field_then_default():
    d = Decoder(DecodeConfig())
    assert d.decode(_msg(b'{"key":"f","ts":1,"x":1}', key=b"k")).key == "k"
    assert d.decode(_msg(b'{"key":"f","ts":1,"x":1}')).key == "f"
    assert d.decode(_msg(b'{"ts":1,"x":1}')).key == "default"


def test_configured_field_names_and_label():
    cfg = DecodeConfig(key_field="id", time_field="when", value_fields=["a", "b"])
    r = Decoder(cfg).decode(_msg(b'{"id":"s","when":5,"a":1,"b":2,"c":9,"is_anomaly":1}'))
    assert isinstance(r, Record)
    assert (r.key, r.ts_ms, r.values.tolist(), r.label) == ("s", 5000, [1.0, 2.0], 1)


BAD = [
    (b"not json", "not valid JSON"),
    (b"[1,2]", "JSON record is not an object"),
    (b'{"x": 1}', "missing time field ts"),
    (b'{"ts": "yesterday", "x": 1}', "unparsable time"),
    (b'{"ts": 1, "x": "a"}', "non-numeric value in field x"),
    (b'{"ts": 1, "x": NaN}', "non-finite value in field x"),
    (b'{"ts": 1, "x": 1e400}', "non-finite value in field x"),
    (b'{"ts": 1, "y": 1}', "missing value field x"),
    (b"", "empty record"),
]


def test_each_bad_row_is_dead_lettered_with_its_reason():
    d = Decoder(DecodeConfig())
    assert isinstance(d.decode(_msg(b'{"ts":1,"x":1}')), Record)
    for i, (raw, reason) in enumerate(BAD):
        out = d.decode(_msg(raw, off=i))
        assert isinstance(out, DeadLetter), raw
        assert out.reason.startswith(reason), (raw, out.reason)
        assert out.raw == raw and out.position.offset == i


def test_oversized_record_is_rejected():
    d = Decoder(DecodeConfig(max_record_bytes=100))
    out = d.decode(_msg(json.dumps({"ts": 1, "x": 1, "pad": "a" * 200}).encode()))
    assert isinstance(out, DeadLetter) and "max_record_bytes" in out.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["ts", "x", "key", "y"]), json_values))
@settings(max_examples=300, deadline=None)
def test_decoder_never_raises_and_records_are_finite(obj):
    d = Decoder(DecodeConfig(value_fields=["x"]))
    out = d.decode(_msg(json.dumps(obj).encode()))
    if isinstance(out, Record):
        assert np.isfinite(out.values).all() and math.isfinite(out.ts_ms)
    else:
        assert out.reason


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_crash(raw):
    out = Decoder(DecodeConfig()).decode(_msg(raw))
    assert isinstance(out, Record | DeadLetter)


def test_integers_beyond_float_range_are_dead_lettered():
    d = Decoder(DecodeConfig())
    assert isinstance(d.decode(_msg(b'{"ts":1,"x":1}')), Record)  # channels known: fast path
    for raw in (b'{"ts": 1' + b"0" * 400 + b', "x": 1}', b'{"ts": 1, "x": 1' + b"0" * 400 + b"}"):
        for dec in (d, Decoder(DecodeConfig())):  # with and without the channels known
            out = dec.decode(_msg(raw))
            assert isinstance(out, DeadLetter)
            assert "out of range" in out.reason or "exceeds 1e30" in out.reason


class _GeneralOnly(Decoder):
    """The decoder without its fast path for plain records."""

    def _decode_plain(self, msg):
        return None


FIELDS = ["ts", "x", "y", "key", "is_anomaly"]
odd_values = (
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.text(max_size=3)
    | st.floats(allow_nan=True) | st.integers(0, 2 * 10**12)
    | st.sampled_from([1e30, -1e30, 1e31, "1.5", "", 10**400, [1], {"a": 1}])
)


@given(
    st.lists(st.tuples(st.dictionaries(st.sampled_from(FIELDS), odd_values, max_size=2),
                       st.sets(st.sampled_from(FIELDS), max_size=1),
                       st.sampled_from([b"", b" ", b"\n"])), max_size=8),
    st.sampled_from([0, 10_000]),
)
@settings(max_examples=300, deadline=None)
def test_fast_path_decodes_as_the_general_one(rows, skew):
    """Same records, same dead letters and reasons, same state, in the same sequence."""
    cfg = DecodeConfig(max_time_skew_ms=skew)
    fast, general = Decoder(cfg), _GeneralOnly(cfg)
    first = _msg(b'{"key": "k", "ts": 1700000000, "x": 1.0, "y": 2}')
    fast.decode(first), general.decode(first)  # fixes the channels: x, y
    for i, (changed, dropped, pad) in enumerate(rows):
        row = {"key": "k", "ts": 1700000000 + i, "x": 0.5, "y": -2, "is_anomaly": 0, **changed}
        raw = json.dumps({k: v for k, v in row.items() if k not in dropped}).encode() + pad
        msg = _msg(raw, key=b"kk" if i % 3 == 2 else None, off=i)
        a, b = fast.decode(msg), general.decode(msg)
        assert type(a) is type(b)
        if isinstance(a, Record):
            assert (a.key, a.ts_ms, a.values.tolist(), a.label, a.position) == (
                b.key, b.ts_ms, b.values.tolist(), b.label, b.position)
            assert a.values.dtype == b.values.dtype
        else:
            assert (a.reason, a.raw) == (b.reason, b.raw)
        assert fast.max_ts_ms == general.max_ts_ms


def test_kafka_keys_that_differ_in_bytes_stay_apart_and_dead_letters_keep_them():
    from streamgen.records import reason_label

    d = Decoder(DecodeConfig())
    body = b'{"ts": 1700000000, "x": 1.0}'
    keys = [d.decode(RawMessage(body, Position("t", 0, i), key=k)).key
            for i, k in enumerate([b"\xff", b"\xfe", b"plain"])]
    assert len(set(keys)) == 3 and keys[2] == "plain"
    dl = d.decode(RawMessage(b"not json", Position("t", 0, 9), key=b"k\xff"))
    assert isinstance(dl, DeadLetter) and dl.key == "k\\xff" and dl.as_dict()["key"] == "k\\xff"
    assert reason_label(dl.reason) == "json"
    assert reason_label("missing time column timestamp (decode.csv_time_column)") == "time"
    assert reason_label("something new") == "other"


def test_a_key_that_is_an_object_or_a_list_is_dead_lettered():
    d = Decoder(DecodeConfig())
    for body in (b'{"key": {"a": 1}, "ts": 1700000000, "x": 1.0}',
                 b'{"key": [1, 2], "ts": 1700000000, "x": 1.0}'):
        out = d.decode(RawMessage(body, Position("t", 0, 0)))
        assert isinstance(out, DeadLetter) and out.reason == "key field key holds an object or a list"
    ok = d.decode(RawMessage(b'{"key": 7, "ts": 1700000000, "x": 1.0}', Position("t", 0, 1)))
    assert isinstance(ok, Record) and ok.key == "7"  # numbers name keys by their text


csv_cells = st.sampled_from(["", " ", "1.5", " 2 ", "nan", "inf", "1e31", "-1e30", "1_000", "abc",
                             "1700000000", "1700000000000", "2023-11-14T22:13:20Z", "0", "1",
                             "0.5", "9" * 40])


@given(
    st.lists(st.tuples(st.dictionaries(st.sampled_from(["timestamp", "x", "y", "key",
                                                        "is_anomaly"]), csv_cells, max_size=2),
                       st.sets(st.sampled_from(["timestamp", "x", "key", "is_anomaly"]),
                               max_size=1),
                       st.booleans()), max_size=8),
    st.sampled_from([0, 10_000]),
)
@settings(max_examples=300, deadline=None)
def test_fast_path_decodes_csv_rows_as_the_general_one(rows, skew):
    """CSV rows (text cells, a missing cell, surplus cells under the key None) decode the
    same through the fast path and the general one."""
    cfg = DecodeConfig(max_time_skew_ms=skew)
    fast, general = Decoder(cfg), _GeneralOnly(cfg)
    first = RawMessage({"key": "k", "timestamp": "1700000000", "x": "1.0", "y": "2"},
                       Position("f", 0, 0))
    fast.decode(first), general.decode(first)  # fixes the channels: x, y
    for i, (changed, dropped, surplus) in enumerate(rows):
        row: dict = {"key": "k", "timestamp": str(1700000000 + i), "x": "0.5", "y": "-2",
                     "is_anomaly": "0", **changed}
        row = {k: v for k, v in row.items() if k not in dropped}
        if surplus:
            row[None] = ["extra"]
        msg = RawMessage(row, Position("f", 0, i + 1))
        a, b = fast.decode(msg), general.decode(msg)
        assert type(a) is type(b)
        if isinstance(a, Record):
            assert (a.key, a.ts_ms, a.values.tolist(), a.label) == (
                b.key, b.ts_ms, b.values.tolist(), b.label)
        else:
            assert (a.reason, a.raw) == (b.reason, b.raw)
        assert fast.max_ts_ms == general.max_ts_ms
