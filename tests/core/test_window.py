"""Windows: order, key isolation, eviction, late policy (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgen.core.gate import LatenessGate
from streamgen.core.window import LateRecord, WindowStore
from streamgen.records import Position, Record


def _rec(key: str, ts: int, v: float, off: int = 0) -> Record:
    return Record(key, ts, np.array([v]), Position("t", 0, off))


events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.floats(-1e3, 1e3)), max_size=200
)


@given(events)
@settings(max_examples=60, deadline=None)
def test_windows_hold_each_keys_latest_points_in_order(evs):
    store = WindowStore(n_channels=1, length=4, horizon=2, max_keys=10)
    seen: dict[str, list[float]] = {}
    for t, (key, v) in enumerate(evs):
        store.append(key, t, np.array([v]))
        seen.setdefault(key, []).append(np.float32(v))
    for key, vals in seen.items():
        slot = store.slots[key]
        n = min(len(vals), 6)
        assert store.span(slot)[-n:, 0].tolist() == vals[-n:]  # key isolation + order
        assert store.count[slot] == len(vals)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=300), st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_key_count_is_bounded_and_lru_evicts_oldest(keys, max_keys):
    store = WindowStore(n_channels=1, length=2, horizon=1, max_keys=max_keys, initial_slots=1)
    order: list[str] = []
    for t, k in enumerate(keys):
        name = f"k{k}"
        store.append(name, t, np.array([1.0]))
        if name in order:
            order.remove(name)
        order.append(name)
        assert store.n_keys <= max_keys
    assert list(store.slots) == order[-max_keys:]
    evicted = {k for k, _, _ in store.drain_evicted()}
    assert evicted.isdisjoint(store.slots) or all(order.count(k) for k in evicted)


def test_late_record_raises_and_equal_timestamp_is_accepted():
    store = WindowStore(n_channels=1, length=2, horizon=1, max_keys=4)
    store.append("a", 10, np.array([1.0]))
    store.append("a", 10, np.array([2.0]))
    with pytest.raises(LateRecord):
        store.append("a", 9, np.array([3.0]))
    store.append("b", 1, np.array([3.0]))  # other keys are independent


def test_idle_keys_are_evicted():
    store = WindowStore(n_channels=1, length=2, horizon=1, max_keys=4, idle_ttl_ms=100)
    store.append("old", 0, np.array([1.0]))
    store.append("new", 150, np.array([1.0]))
    assert store.evict_idle(now_ms=150) == 1
    assert list(store.slots) == ["new"]
    assert store.drain_evicted()[0][::2] == ("old", "idle")


def test_state_dict_round_trip_keeps_windows():
    store = WindowStore(n_channels=2, length=3, horizon=1, max_keys=8)
    for t in range(7):
        store.append("a", t, np.array([t, -t], float))
        store.append("b", t, np.array([10 + t, 0], float))
    other = WindowStore(n_channels=2, length=3, horizon=1, max_keys=8)
    other.load_state_dict(store.state_dict(["a"]))
    np.testing.assert_array_equal(other.span(other.slots["a"]), store.span(store.slots["a"]))
    assert "b" not in other.slots


@given(st.lists(st.integers(0, 50), min_size=1, max_size=80), st.integers(0, 20))
@settings(max_examples=60, deadline=None)
def test_reorder_gate_releases_in_time_order_and_loses_nothing(times, lateness):
    gate = LatenessGate(lateness)
    out, late = [], []
    for i, t in enumerate(times):
        rel, rej = gate.offer(_rec("k", t, 0.0, i))
        out.extend(rel)
        if rej is not None:
            late.append(rej)
    out.extend(gate.flush())
    ts = [r.ts_ms for r in out]
    assert ts == sorted(ts)
    assert len(out) + len(late) == len(times)


batches = st.lists(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(-2, 3), st.floats(-1e3, 1e3)),
             max_size=40),
    min_size=1, max_size=6,
)


@given(batches, st.integers(1, 6), st.integers(1, 3), st.integers(2, 4), st.integers(1, 2),
       st.lists(st.integers(0, 5), max_size=4))
@settings(max_examples=150, deadline=None)
def test_batch_fold_matches_point_by_point(bs, max_keys, stride, W, H, flag_backs):
    """fold() of a batch = append() of each point (late points, LRU eviction, slot reuse
    inside the batch, due windows and spans as of each point, flags from earlier batches)."""
    ref = WindowStore(n_channels=1, length=W, horizon=H, max_keys=max_keys, initial_slots=1)
    new = WindowStore(n_channels=1, length=W, horizon=H, max_keys=max_keys, initial_slots=1)
    clock: dict[str, int] = {}
    for batch in bs:
        keys, ts, vals = [], [], []
        for key, dt, v in batch:
            clock[key] = clock.get(key, 0) + dt
            keys.append(key)
            ts.append(clock[key])
            vals.append([v])
        exp_slot, exp_win, exp_span = [], {}, {}
        for i, (key, t, v) in enumerate(zip(keys, ts, vals, strict=True)):
            try:
                slot, _ = ref.append(key, t, np.array(v))
            except LateRecord:
                exp_slot.append(-1)
                continue
            exp_slot.append(slot)
            if ref.count[slot] >= W and ref.since_emit[slot] >= stride:
                ref.since_emit[slot] = 0
                exp_win[i] = ref.window(slot)
            if ref.count[slot] >= W + H:
                exp_span[i] = (ref.span(slot), ref.span_flagged(slot))
        fold = new.fold(keys, ts, np.array(vals, float).reshape(-1, 1), stride)
        assert fold.slot.tolist() == exp_slot
        assert np.flatnonzero(fold.ready).tolist() == sorted(exp_win)
        if exp_win:
            idx = np.array(sorted(exp_win))
            np.testing.assert_array_equal(fold.windows(idx), np.stack([exp_win[i] for i in idx]))
        if exp_span:
            idx = np.array(sorted(exp_span))
            np.testing.assert_array_equal(fold.spans(idx),
                                          np.stack([exp_span[i][0] for i in idx]))
            assert fold.span_flagged(idx).tolist() == [exp_span[i][1] for i in idx]
        assert list(new.slots.items()) == list(ref.slots.items())
        assert new.drain_evicted() == ref.drain_evicted()
        for slot in ref.slots.values():
            n = min(int(ref.count[slot]), W + H)
            np.testing.assert_array_equal(new.span(slot)[W + H - n :], ref.span(slot)[W + H - n :])
            for name in ("count", "since_emit", "last_ts"):
                assert getattr(new, name)[slot] == getattr(ref, name)[slot], name
        for back, slot in zip(flag_backs, list(ref.slots.values()), strict=False):
            ref.flag_back(slot, back)
            new.flag_back(slot, back)


def test_reorder_gate_flush_keeps_each_keys_own_release_time():
    # After a flush, a key's late cut-off is its own newest released time, not another key's.
    gate = LatenessGate(10_000)
    gate.offer(_rec("a", 5_000, 0.0, 0))
    gate.offer(_rec("b", 1_000, 0.0, 1))
    assert len(gate.flush()) == 2
    _, late_b = gate.offer(_rec("b", 2_000, 0.0, 2))  # after b's 1000: in order
    _, late_a = gate.offer(_rec("a", 4_000, 0.0, 3))  # before a's 5000: late
    assert late_b is None and late_a is not None
