"""Engine: one row per record, prequential scoring, protection, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamgen.bench.synthetic import make_stream
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core import checkpoint
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import Metrics, RawMessage
from streamgen.io.files import ListSink
from streamgen.models.registry import MODEL_NAMES
from streamgen.records import Position

SMALL = ["model.hidden=16", "model.latent=4", "window.length=16", "model.horizon=4",
         "model.warmup_steps=5", "calibrate.warmup_windows=10"]


def _cfg(*extra: str) -> PipelineConfig:
    return apply_overrides(PipelineConfig(), SMALL + list(extra))


def _msgs(rows, start=0):
    return [RawMessage(json.dumps(r).encode(), Position("t", 0, start + i))
            for i, r in enumerate(rows)]


def _run(engine, msgs, batch=128):
    for i in range(0, len(msgs), batch):
        engine.process(msgs[i : i + batch])


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_one_row_per_record_in_order_with_finite_scores(model):
    rows = make_stream(n_keys=3, n_points=300, seed=2)
    msgs = _msgs(rows)
    msgs.insert(100, RawMessage(b"garbage", Position("t", 0, 10_000)))
    sink, dlq, cont = ListSink(), ListSink(), ListSink()
    eng = Engine(_cfg(f"model.name={model}"), Sinks(scores=sink, dead_letters=dlq,
                                                     continuations=cont))
    _run(eng, msgs)
    assert len(sink.rows) == len(msgs)
    assert [r["offset"] for r in sink.rows] == [m.position.offset for m in msgs]
    bad = sink.rows[100]
    assert bad["score"] is None and bad["error"] == "not valid JSON"
    good = [r for r in sink.rows if r["error"] is None]
    assert all(np.isfinite(r["score"]) for r in good)
    assert any(r["warm"] for r in good) and not good[0]["warm"]
    assert len(dlq.rows) == 1 and dlq.rows[0]["raw"] == "garbage"
    c = cont.rows[-1]
    assert c["horizon"] == 4 and np.array(c["forecast"]).shape == (4, 1)
    if model == "rvae":
        assert np.array(c["spread"]).shape == (4, 1)


def test_late_records_are_dead_lettered_with_reason():
    sink, dlq = ListSink(), ListSink()
    eng = Engine(_cfg(), Sinks(scores=sink, dead_letters=dlq))
    eng.process(_msgs([{"key": "a", "ts": 10, "x": 1.0}, {"key": "a", "ts": 5, "x": 2.0}]))
    assert sink.rows[1]["error"].startswith("late") and dlq.rows[0]["reason"].startswith("late")


def test_reorder_policy_scores_out_of_order_records():
    sink = ListSink()
    eng = Engine(_cfg("window.late_policy=reorder", "window.allowed_lateness_ms=5000"),
                 Sinks(scores=sink))
    rows = [{"key": "a", "ts": t, "x": float(t)} for t in (1, 3, 2, 4, 10, 11)]
    eng.process(_msgs(rows))
    eng.flush_held()
    assert len(sink.rows) == 6 and all(r["error"] is None for r in sink.rows)
    assert sorted(r["offset"] for r in sink.rows) == list(range(6))


def test_anomalous_windows_are_kept_out_of_training(monkeypatch):
    eng = Engine(_cfg(), Sinks(scores=ListSink()))
    rows = make_stream(n_keys=2, n_points=400, seed=1, anomalies_per_key=0)
    _run(eng, _msgs(rows))
    assert eng.learner.warm
    learned = []
    monkeypatch.setattr(eng.learner, "learn", lambda spans: learned.append(spans) or
                        {"loss": 0.0, "kl": float("nan"), "skipped": 0, "rolled_back": 0})
    # Force every window of key sensor-0 to be flagged by making the threshold tiny.
    eng.fusion.threshold = -1e9
    more = make_stream(n_keys=2, n_points=30, seed=5, anomalies_per_key=0, start_s=1_800_000_000)
    eng.process(_msgs([r for r in more if r["key"] == "sensor-0"], start=10_000))
    assert all(len(s) == 0 for s in learned)


def test_checkpoint_round_trip_resumes_identically(tmp_path):
    # On the CPU: cuDNN's GRU kernels are not bit-reproducible, and this compares to 1e-5.
    cfg = _cfg("model.name=rvae", "model.device=cpu")
    rows = make_stream(n_keys=2, n_points=300, seed=4)
    msgs = _msgs(rows)
    half = 256
    a = ListSink()
    full = Engine(cfg, Sinks(scores=a))
    _run(full, msgs)
    b = ListSink()
    first = Engine(cfg, Sinks(scores=b))
    _run(first, msgs[:half])
    checkpoint.save_atomic(checkpoint.full_state(first), tmp_path / "ck.pt")
    second = Engine(cfg, Sinks(scores=b))
    checkpoint.load_full_state(second, checkpoint.load(tmp_path / "ck.pt"))
    assert second.offsets[("t", 0)] == half - 1
    _run(second, msgs[half:])
    assert [r["score"] for r in b.rows] == pytest.approx([r["score"] for r in a.rows], rel=1e-5)


def test_checkpoint_refuses_arbitrary_pickles(tmp_path):
    import pickle

    from streamgen.errors import CheckpointError

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": 1, "x": Evil()}))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_iso_ms_batch_matches_iso_ms():
    from streamgen.core.engine import iso_ms, iso_ms_batch

    fast = np.array([0, 1, 999, 1_700_000_000_123, 7_999_999_999_999])
    assert iso_ms_batch(fast) == [iso_ms(int(t)) for t in fast]
    odd = np.array([-1500, 1_700_000_000_123, 253_402_300_799_999])  # outside the fast range
    assert iso_ms_batch(odd) == [iso_ms(int(t)) for t in odd]


def test_key_evicted_and_back_in_one_batch_keeps_its_partition():
    eng = Engine(_cfg("window.max_keys=2"), Sinks(scores=ListSink()))
    eng.process(_msgs([{"key": k, "ts": t, "x": 1.0} for t, k in enumerate("abcab")]))
    assert list(eng.store.slots) == ["a", "b"]
    assert set(eng.key_partition) == {"a", "b"}


@pytest.mark.parametrize("extra", [[], ["window.max_keys=3", "window.stride=2"]])
def test_batch_size_does_not_change_scores_of_a_frozen_model(extra):
    """The batched fold (windows, normalizer, forecasts, evictions) gives each record the score
    it gets when records come one at a time; learning is off so the weights stay equal."""
    rows = make_stream(n_keys=5, n_points=60, seed=3)
    per_key: dict[str, list] = {}
    for r in rows:
        per_key.setdefault(r["key"], []).append(r)
    # Runs of 12 points per key, so that keys are evicted and come back with full windows.
    rows = [r for b in range(0, 60, 12) for k in per_key for r in per_key[k][b : b + 12]]
    rows[40]["ts"] -= 5.0  # a late record
    out = []
    for batch in (1, 97):
        sink = ListSink()
        eng = Engine(_cfg("model.arch=mlp", "model.max_steps_per_batch=0", "window.length=8",
                          "model.horizon=2", *extra), Sinks(scores=sink))
        _run(eng, _msgs(rows), batch=batch)
        out.append(sink.rows)
    a, b = out
    assert [r["error"] for r in a] == [r["error"] for r in b]
    assert sum(r["error"] is not None for r in a) == 1
    sa = [r["score"] for r in a if r["error"] is None]
    sb = [r["score"] for r in b if r["error"] is None]
    assert sb == pytest.approx(sa, rel=1e-4, abs=1e-6)


def test_cold_rows_have_no_evidence_or_a_fallback_detectors_discounted_z():
    rows = make_stream(n_keys=3, n_points=60, seed=2, anomalies_per_key=0)
    for fallback, n_zero in (("[]", 60), ("[diff]", 2)):
        sink = ListSink()
        eng = Engine(_cfg(f"calibrate.fallback={fallback}"), Sinks(scores=sink))
        _run(eng, _msgs(rows))
        for key in ("sensor-0", "sensor-1", "sensor-2"):
            mine = [r for r in sink.rows if r["key"] == key]
            assert all(not r["warm"] for r in mine)
            scores = np.array([r["score"] for r in mine])
            # Without history nothing can be judged: 0, the fused score's "no evidence".
            assert (scores[:n_zero] == 0.0).all()
            if n_zero < len(scores):
                # The first differences of a clean stream, discounted for the short history.
                assert (scores[n_zero:] != 0.0).any() and np.abs(scores).max() < 4.0


def test_idle_keys_are_evicted_after_idle_ttl_of_event_time():
    class Count(Metrics):
        def __init__(self) -> None:
            self.evicted: list[str] = []

        def keys_evicted(self, n: int, reason: str) -> None:
            self.evicted += [reason] * n

    m = Count()
    eng = Engine(_cfg("window.idle_ttl_ms=10000"), Sinks(scores=ListSink()), m)
    rows = [{"key": k, "ts": 1_700_000_000 + t, "x": float(t % 7)} for t in range(20) for k in "ab"]
    rows += [{"key": "b", "ts": 1_700_000_000 + t, "x": 1.0} for t in range(20, 40)]
    _run(eng, _msgs(rows))
    assert set(eng.store.slots) == {"a", "b"}  # a has been silent for 20 s, checked lazily
    eng.process(_msgs([{"key": "b", "ts": 1_700_000_045, "x": 1.0}], start=10_000))
    assert set(eng.store.slots) == {"b"} and m.evicted == ["idle"]
    # A key that comes back after its eviction starts afresh.
    out = ListSink()
    eng.sinks.scores = out
    eng.process(_msgs([{"key": "a", "ts": 1_700_000_046, "x": 1.0}], start=10_001))
    assert out.rows[0]["score"] == 0.0 and not out.rows[0]["warm"]


def test_checkpoints_written_before_the_state_api_still_load_and_resume_identically():
    """``data/engine_v2.pt`` was written by the code before the engine's partition-state API
    (``data/make_engine_v2.py`` at commit f63f32d): a full state after 256 records with the
    reorder gate holding some, a partition file of the same engine, and the scores an
    uninterrupted engine gave the rest. Both load, and the full state resumes to the same
    scores."""
    from pathlib import Path

    fx = checkpoint.load(Path(__file__).parent / "data" / "engine_v2.pt")
    cfg = apply_overrides(PipelineConfig(), fx["overrides"])
    rows = make_stream(n_keys=2, n_points=300, seed=4)
    msgs = _msgs(rows)
    sink = ListSink()
    eng = Engine(cfg, Sinks(scores=sink))
    checkpoint.load_full_state(eng, fx["full"])
    assert eng.offsets[("t", 0)] == 255 and eng.gate.held() == 4
    _run(eng, msgs[256:])
    eng.flush_held()
    got = {r["offset"]: r["score"] for r in sink.rows}
    assert sorted(got) == fx["rest_offsets"]
    assert [got[o] for o in fx["rest_offsets"]] == pytest.approx(fx["rest_scores"], rel=1e-5)
    # The engine writes the same layout again: every per-key entry, same keys.
    other = Engine(cfg)
    checkpoint.load_full_state(other, fx["full"])
    state = checkpoint.full_state(other)
    assert list(state) == list(fx["full"]) and list(state["keys"]) == list(fx["full"]["keys"])
    for name in ("prev_fc", "fc_age", "has_fc", "last_anom", "since_flag", "n_windows"):
        assert state["keys"][name].equal(fx["full"]["keys"][name]), name
    # The partition file: its keys and held records.
    part = fx["partition"]
    fresh = Engine(cfg)
    assert checkpoint.load_partition_state(fresh, part) == 4
    assert sorted(fresh.partition_keys([("t", 0)])[("t", 0)]) == ["sensor-0", "sensor-1"]
    redo = checkpoint.partition_state(fresh, ("t", 0), ["sensor-0", "sensor-1"], part["offset"])
    assert list(redo) == list(part)
    assert list(redo["keys"]) == list(part["keys"])
