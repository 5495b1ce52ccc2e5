"""Alert state machine: N-of-M, hysteresis, cooldown, max_open, checkpoints."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgen.config import AlertConfig, PipelineConfig
from streamgen.core.alerting import Alerter, AlertEvent
from streamgen.errors import ConfigError

FIRE = 4.0
RESOLVE = 3.0  # 0.75 * FIRE


def make(**kw: object) -> Alerter:
    return Alerter(AlertConfig(**kw), default_threshold=FIRE)


def run(alerter: Alerter, scores: Sequence[float], key: str = "k", t0: int = 0, dt: int = 1000):
    """Feed ``scores`` for one key at ts t0, t0+dt, ...; return (ts, event) pairs."""
    out = []
    for i, s in enumerate(scores):
        ts = t0 + i * dt
        ev = alerter.update(key, ts, s)
        if ev is not None:
            out.append((ts, ev))
    return out


# -- basics -----------------------------------------------------------------------------------


def test_defaults_follow_calibrate_threshold() -> None:
    cfg = PipelineConfig()
    a = Alerter(cfg.alerting, cfg.calibrate.threshold)
    assert a.fire_threshold == cfg.calibrate.threshold
    assert a.resolve_threshold == pytest.approx(0.75 * cfg.calibrate.threshold)


def test_explicit_thresholds_and_bad_hysteresis() -> None:
    a = make(fire_threshold=2.0, resolve_threshold=1.0)
    assert (a.fire_threshold, a.resolve_threshold) == (2.0, 1.0)
    with pytest.raises(ConfigError, match="alerting.resolve_threshold"):
        make(fire_threshold=2.0, resolve_threshold=3.0)


def test_fire_then_resolve_event_contents() -> None:
    a = make(resolve_after=3)
    events = run(a, [0, 1, 5, 7, 4.5, 2, 1, 0, 0])
    assert [e.state for _, e in events] == ["firing", "resolved"]
    (t_fire, fire), (t_res, res) = events
    assert fire == AlertEvent("k", "firing", 2000, None, 5.0, 1)
    assert t_fire == 2000 and t_res == 7000
    assert res == AlertEvent("k", "resolved", 2000, 7000, 7.0, 3)
    assert res.as_dict() == {
        "key": "k",
        "state": "resolved",
        "start_ms": 2000,
        "end_ms": 7000,
        "peak": 7.0,
        "count": 3,
    }
    json.dumps(res.as_dict())
    assert not a.is_open("k") and a.n_open == 0


def test_threshold_is_inclusive_and_nan_ignored() -> None:
    a = make()
    assert a.update("k", 0, math.nan) is None
    ev = a.update("k", 1, FIRE)
    assert ev is not None and ev.state == "firing"
    assert a.update("k", 2, math.nan) is None and a.is_open("k")


def test_disabled_never_fires() -> None:
    a = make(enabled=False)
    assert run(a, [100.0] * 10) == []
    assert len(a) == 0


def test_quiet_keys_keep_no_state() -> None:
    a = make(min_count=2, within=4)
    for i in range(1000):
        a.update(f"key-{i}", i, 1.0)
    assert len(a) == 0
    a.update("x", 0, 9.0)
    assert len(a) == 1
    for t in range(1, 5):
        a.update("x", t, 0.0)
    assert len(a) == 0  # the lone hit slid out of the window


def test_between_thresholds_keeps_alert_open() -> None:
    a = make(resolve_after=2)
    run(a, [9.0])
    # 3.5 is below fire but above resolve: no resolve however long it lasts.
    assert run(a, [3.5] * 50, t0=1000) == []
    assert a.is_open("k")
    # A single point below resolve between band points does not resolve either.
    assert run(a, [2.0, 3.5, 2.0, 3.5], t0=100_000) == []
    events = run(a, [2.0, 2.0], t0=200_000)
    assert [e.state for _, e in events] == ["resolved"]


# -- N-of-M -----------------------------------------------------------------------------------


def test_n_of_m_needs_min_count_within_window() -> None:
    a = make(min_count=3, within=5)
    # Hits at 0, 3, 6, 9: never 3 within any 5 consecutive points.
    scores = [9.0 if i % 3 == 0 else 0.0 for i in range(12)]
    assert run(a, scores) == []
    events = run(a, [9.0, 0.0, 9.0, 0.0, 9.0], key="b")
    assert len(events) == 1
    ts, ev = events[0]
    assert ev.state == "firing" and ts == 4000 and ev.start_ms == 0 and ev.count == 3


def first_fire_reference(hits: Sequence[bool], min_count: int, within: int) -> int | None:
    for i in range(len(hits)):
        if sum(hits[max(0, i - within + 1) : i + 1]) >= min_count:
            return i
    return None


@settings(max_examples=200, deadline=None)
@given(
    hits=st.lists(st.booleans(), min_size=1, max_size=60),
    within=st.integers(1, 8),
    data=st.data(),
)
def test_n_of_m_matches_brute_force(hits: list[bool], within: int, data: st.DataObject) -> None:
    min_count = data.draw(st.integers(1, within))
    a = make(min_count=min_count, within=within)
    events = run(a, [9.0 if h else 0.0 for h in hits])
    expected = first_fire_reference(hits, min_count, within)
    if expected is None:
        assert events == []
    else:
        ts, ev = events[0]
        assert ev.state == "firing" and ts == expected * 1000
        assert ev.count >= min_count and ev.peak == 9.0


# -- hysteresis / flapping --------------------------------------------------------------------


def naive_changes(scores: Sequence[float]) -> int:
    above = [s >= FIRE for s in scores]
    return sum(1 for x, y in zip(above, above[1:], strict=False) if x != y) + int(above[0])


@settings(max_examples=200, deadline=None)
@given(
    noise=st.lists(st.floats(-0.9, 0.9, allow_nan=False), min_size=20, max_size=300),
    resolve_after=st.integers(1, 6),
)
def test_no_flapping_near_threshold(noise: list[float], resolve_after: int) -> None:
    # A score hovering around the fire threshold, never below the resolve threshold.
    scores = [FIRE + n for n in noise]
    a = make(resolve_after=resolve_after)
    events = run(a, scores)
    assert len(events) <= 1  # at most one fire and never a resolve
    assert all(e.state == "firing" for _, e in events)
    if any(s >= FIRE for s in scores):
        assert a.is_open("k")


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(0.0, 8.0, allow_nan=False), min_size=1, max_size=300),
    resolve_after=st.integers(1, 6),
    min_count=st.integers(1, 3),
    extra=st.integers(0, 3),
)
def test_state_changes_bounded_by_quiet_runs(
    scores: list[float], resolve_after: int, min_count: int, extra: int
) -> None:
    a = make(resolve_after=resolve_after, min_count=min_count, within=min_count + extra)
    events = [e for _, e in run(a, scores)]
    # Events alternate firing/resolved, starting with firing.
    assert [e.state for e in events] == ["firing", "resolved"] * (len(events) // 2) + (
        ["firing"] if len(events) % 2 else []
    )
    # Each resolve consumes resolve_after consecutive points below the resolve threshold.
    quiet_blocks, run_len = 0, 0
    for s in scores + [math.inf]:
        if s < RESOLVE:
            run_len += 1
        else:
            quiet_blocks += run_len // resolve_after
            run_len = 0
    resolves = sum(e.state == "resolved" for e in events)
    assert resolves <= quiet_blocks
    assert len(events) <= 2 * quiet_blocks + 1
    assert len(events) <= naive_changes(scores)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(0.0, 50.0, allow_nan=False), max_size=200),
    resolve_after=st.integers(1, 10),
    cooldown_ms=st.integers(0, 10_000),
    min_count=st.integers(1, 3),
)
def test_every_fire_is_resolved_when_scores_go_low(
    scores: list[float], resolve_after: int, cooldown_ms: int, min_count: int
) -> None:
    a = make(resolve_after=resolve_after, cooldown_ms=cooldown_ms, min_count=min_count, within=3)
    events = [e for _, e in run(a, scores + [0.0] * resolve_after)]
    assert not a.is_open("k") and a.n_open == 0
    fires = [e for e in events if e.state == "firing"]
    resolves = [e for e in events if e.state == "resolved"]
    assert len(fires) == len(resolves)
    for f, r in zip(fires, resolves, strict=True):
        assert r.start_ms == f.start_ms and r.end_ms is not None and r.end_ms >= f.start_ms
        assert r.peak >= f.peak >= FIRE and r.count >= f.count >= 1


# -- cooldown ---------------------------------------------------------------------------------


def test_cooldown_suppresses_then_fires_if_still_anomalous() -> None:
    a = make(resolve_after=2, cooldown_ms=5000)
    ev = run(a, [9.0, 0.0, 0.0])  # fire at 0, resolve at 2000
    assert [e.state for _, e in ev] == ["firing", "resolved"]
    # Hits during the cooldown (until 7000) are suppressed, counted once per run of hits.
    assert run(a, [9.0, 9.0, 9.0], t0=3000) == []
    assert a.suppressed_total == 1
    assert run(a, [0.0], t0=6000) == []
    assert run(a, [9.0], t0=6500) == []
    assert a.suppressed_total == 2
    # Still anomalous when the cooldown ends: it fires now.
    events = run(a, [9.0], t0=7000)
    assert [(ts, e.state) for ts, e in events] == [(7000, "firing")]


@settings(max_examples=150, deadline=None)
@given(
    scores=st.lists(st.sampled_from([0.0, 2.0, 3.5, 5.0, 9.0]), max_size=200),
    gaps=st.lists(st.integers(0, 3000), min_size=200, max_size=200),
    cooldown_ms=st.integers(1, 20_000),
)
def test_no_fire_during_cooldown(scores: list[float], gaps: list[int], cooldown_ms: int) -> None:
    a = make(resolve_after=2, cooldown_ms=cooldown_ms)
    ts, last_resolve = 0, None
    for s, gap in zip(scores, gaps, strict=False):
        ts += gap
        ev = a.update("k", ts, s)
        if ev is None:
            continue
        if ev.state == "resolved":
            last_resolve = ts
        elif last_resolve is not None:
            assert ts >= last_resolve + cooldown_ms


# -- max_open ---------------------------------------------------------------------------------


def test_max_open_caps_and_counts_suppressed() -> None:
    a = make(max_open=3, resolve_after=1)
    fired = [k for k in "abcdef" if (ev := a.update(k, 0, 9.0)) and ev.state == "firing"]
    assert fired == ["a", "b", "c"]
    assert a.n_open == 3 and a.suppressed_total == 3
    # Still suppressed while full: counted once per key's run, not per point.
    for k in "def":
        assert a.update(k, 1, 9.0) is None
    assert a.suppressed_total == 3
    # A slot frees up: the next still-anomalous key fires.
    assert a.update("a", 2, 0.0) == AlertEvent("a", "resolved", 0, 2, 9.0, 1)
    ev = a.update("e", 3, 9.0)
    assert ev is not None and ev.state == "firing" and ev.start_ms == 0 and ev.count == 3
    assert a.n_open == 3


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 9), st.sampled_from([0.0, 3.5, 9.0])), max_size=300),
    max_open=st.integers(1, 5),
)
def test_n_open_never_exceeds_max_open(steps: list[tuple[int, float]], max_open: int) -> None:
    a = make(max_open=max_open, resolve_after=2)
    for t, (k, s) in enumerate(steps):
        a.update(f"k{k}", t, s)
        assert a.n_open <= max_open
        assert a.n_open == sum(a.is_open(f"k{i}") for i in range(10))


# -- forget / checkpoints ---------------------------------------------------------------------


def test_forget_resolves_open_alert() -> None:
    a = make()
    run(a, [9.0, 6.0])
    ev = a.forget("k", 5000)
    assert ev == AlertEvent("k", "resolved", 0, 5000, 9.0, 2)
    assert a.n_open == 0 and not a.is_open("k")
    assert a.forget("k", 6000) is None
    assert a.forget("never-seen", 6000) is None


def assert_plain(obj: object) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str)
            assert_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_plain(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), type(obj)


def roundtrip(state: dict) -> dict:
    """Through torch's safe loader when torch is here, else through JSON."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return json.loads(json.dumps(state))
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([0.0, 2.0, 3.5, 4.0, 9.0])),
        min_size=1,
        max_size=150,
    ),
    data=st.data(),
)
def test_state_dict_round_trip_mid_episode(steps: list[tuple[str, float]], data) -> None:
    cfg = dict(min_count=2, within=3, resolve_after=2, cooldown_ms=3, max_open=2)
    cut = data.draw(st.integers(0, len(steps)))
    whole, first = make(**cfg), make(**cfg)
    expected = [whole.update(k, t, s) for t, (k, s) in enumerate(steps)]
    got = [first.update(k, t, s) for t, (k, s) in enumerate(steps[:cut])]
    state = first.state_dict()
    assert_plain(state)
    second = make(**cfg)
    second.load_state_dict(roundtrip(state))
    assert second.n_open == first.n_open and second.suppressed_total == first.suppressed_total
    got += [second.update(k, t, s) for t, (k, s) in enumerate(steps) if t >= cut]
    assert got == expected
    assert second.state_dict() == whole.state_dict()


def test_state_dict_per_partition_merge() -> None:
    a = make(cooldown_ms=100)
    run(a, [9.0], key="p0-key")
    run(a, [9.0, 0.0, 0.0, 0.0, 0.0, 0.0], key="p1-key")  # resolved, in cooldown
    a.update("p1-key", 5001, 9.0)  # suppressed
    assert a.suppressed_total == 1
    s0 = a.state_dict(["p0-key", "absent"])
    s1 = a.state_dict(["p1-key"])
    assert "suppressed_total" not in s0 and set(s0["keys"]) == {"p0-key"}
    b = make(cooldown_ms=100)
    b.load_state_dict(roundtrip(s0))
    b.load_state_dict(roundtrip(s1))
    b.load_state_dict(roundtrip(s0))  # loading the same keys again replaces, not adds
    assert b.n_open == 1 and b.is_open("p0-key") and not b.is_open("p1-key")
    assert b.state_dict()["keys"] == a.state_dict()["keys"]
    with pytest.raises(ValueError, match="version"):
        b.load_state_dict({"version": 99, "keys": {}})


def test_numpy_scores_keep_state_plain() -> None:
    np = pytest.importorskip("numpy")
    a = make(min_count=2, within=3, cooldown_ms=10)
    for t, s in zip(np.arange(4, dtype=np.int64), np.array([9.0, 9.0, 1.0, 0.5]), strict=True):
        a.update("k", t, s)
    state = a.state_dict()
    assert_plain(state)
    assert roundtrip(state) == state
    part = a.state_dict(np.array(["k", "other"]))  # keys as a numpy array of strings
    assert_plain(part)
    assert set(part["keys"]) == {"k"} and type(next(iter(part["keys"]))) is str
