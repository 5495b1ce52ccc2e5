"""Windows: order, key isolation, eviction, late policy (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgen.core.window import LatenessGate, LateRecord, WindowStore
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
