"""Garbage in: every bad record is dead-lettered with a reason, nothing crashes, and valid
records around the garbage are scored exactly as if the garbage had never been there."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from streamgen.bench.synthetic import make_stream
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.io.files import ListSink
from streamgen.records import Position

pytestmark = pytest.mark.reliability

SMALL = ["model.hidden=16", "model.latent=4", "window.length=16", "model.horizon=4",
         "model.warmup_steps=5", "calibrate.warmup_windows=10"]


def _garbage(rng: random.Random, i: int) -> bytes:
    kinds = [
        lambda: b"{not json",
        lambda: json.dumps([1, 2, 3]).encode(),
        lambda: json.dumps({"key": "g", "x0": 1.0}).encode(),  # no time
        lambda: json.dumps({"key": "g", "ts": "soon", "x0": 1.0}).encode(),
        lambda: json.dumps({"key": "g", "ts": 1, "x0": "NaN"}).encode(),
        lambda: b'{"key": "g", "ts": 1, "x0": Infinity}',
        lambda: json.dumps({"key": "g", "ts": 1, "x0": 1e308 * 10}).encode(),
        lambda: json.dumps({"key": "g", "ts": 1, "x1": 1.0}).encode(),  # wrong channel
        lambda: json.dumps({"key": "g", "ts": 1, "x0": 1, "pad": "z" * 2_000_000}).encode(),
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))),
        lambda: json.dumps({"key": "g", "ts": 1e30, "x0": 1.0}).encode(),
        lambda: b"",
    ]
    return kinds[i % len(kinds)]()


def test_ten_thousand_malformed_records_leave_valid_scores_untouched():
    cfg = apply_overrides(PipelineConfig(), SMALL + ["decode.value_fields=[x0]"])
    rows = make_stream(n_keys=3, n_points=200, seed=11)
    valid = [json.dumps(r).encode() for r in rows]
    rng = random.Random(0)
    batches_clean, batches_mixed, n_bad = [], [], 0
    off = 0
    for b in range(0, len(valid), 60):
        chunk = valid[b : b + 60]
        batches_clean.append([RawMessage(v, Position("t", 0, b + i)) for i, v in enumerate(chunk)])
        mixed = []
        for v in chunk:
            for _ in range(17):  # ~10k garbage records in all
                mixed.append(RawMessage(_garbage(rng, n_bad), Position("m", 0, off)))
                n_bad += 1
                off += 1
            mixed.append(RawMessage(v, Position("m", 0, off)))
            off += 1
        batches_mixed.append(mixed)
    assert n_bad >= 10_000

    clean, mixed_sink, dlq = ListSink(), ListSink(), ListSink()
    e1 = Engine(cfg, Sinks(scores=clean))
    for b in batches_clean:
        e1.process(b)
    e2 = Engine(cfg, Sinks(scores=mixed_sink, dead_letters=dlq))
    for b in batches_mixed:
        e2.process(b)

    assert len(dlq.rows) == n_bad
    assert all(r["reason"] for r in dlq.rows)
    assert len(mixed_sink.rows) == n_bad + len(valid)  # every record has a row
    good = [r for r in mixed_sink.rows if r["error"] is None]
    assert [r["score"] for r in good] == [r["score"] for r in clean.rows]
    reasons = {r["reason"].split(":")[0].split(" (")[0] for r in dlq.rows}
    assert len(reasons) >= 8


def test_unbounded_key_cardinality_is_evicted_and_memory_stays_bounded():
    cfg = apply_overrides(PipelineConfig(), SMALL + ["window.max_keys=500"])
    eng = Engine(cfg, Sinks())
    for start in range(0, 100_000, 5_000):
        msgs = [
            RawMessage(json.dumps({"key": f"k{i}", "ts": 1_700_000_000 + i, "x": 1.0}).encode(),
                       Position("t", 0, i))
            for i in range(start, start + 5_000)
        ]
        eng.process(msgs)
        assert eng.store.n_keys <= 500 and eng.store.n_slots <= 500
    assert len(eng.calibrator.count) <= 500


def test_far_future_timestamp_does_not_poison_a_key():
    cfg = apply_overrides(PipelineConfig(), SMALL + ["decode.max_time_skew_ms=86400000"])
    sink = ListSink()
    eng = Engine(cfg, Sinks(scores=sink))
    base = 1_700_000_000
    rows = [{"key": "a", "ts": base + i, "x0": float(i % 5)} for i in range(50)]
    rows.insert(20, {"key": "a", "ts": base + 10 * 365 * 86400, "x0": 1.0})
    eng.process([RawMessage(json.dumps(r).encode(), Position("t", 0, i))
                 for i, r in enumerate(rows)])
    errors = [r["error"] for r in sink.rows]
    assert errors[20].startswith("time skew")
    assert all(e is None for j, e in enumerate(errors) if j != 20)


def test_cli_survives_a_file_of_garbage(tmp_path):
    rng = random.Random(3)
    lines = []
    for i in range(3000):
        if i % 3 == 0:
            lines.append(json.dumps({"key": "k", "ts": 1_700_000_000 + i, "x0": float(i % 7)}))
        else:
            lines.append(_garbage(rng, i).decode("utf-8", errors="replace").replace("\n", " ")
                         [:5000])
    src = tmp_path / "junk.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "streamgen", "score", str(src), "-o", str(out),
         "--set", "model.hidden=16"], capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(src.read_text().splitlines())
    valid = [r for r in rows if r["error"] is None]
    assert len(valid) >= 1000 and np.isfinite([r["score"] for r in valid]).all()
