"""Windows per key in event-time order, row bookkeeping, time split, fitted scaling."""

from __future__ import annotations

import numpy as np

from streamgen.batch.dataset import KeyScaler, group_by_key, make_windows, split_by_time
from streamgen.batch.history import read_history
from streamgen.records import Position, Record


def _rec(key: str, ts: int, v: float, row: int) -> Record:
    return Record(key, ts, np.array([v, -v]), Position("f", -1, row))


def test_event_time_order_and_row_bookkeeping():
    # Rows arrive out of event-time order and interleaved across keys.
    recs = [_rec("a", 3, 3.0, 0), _rec("b", 1, 10.0, 1), _rec("a", 1, 1.0, 2),
            _rec("a", 2, 2.0, 3), _rec("b", 2, 20.0, 4), _rec("a", 4, 4.0, 5)]  # fmt: skip
    series = group_by_key(recs)
    assert [s.key for s in series] == ["a", "b"]
    assert series[0].ts_ms.tolist() == [1, 2, 3, 4]
    assert series[0].rows.tolist() == [2, 3, 0, 5]
    w = make_windows(series, KeyScaler.fit(series, 1.0), length=2)
    assert w.rows.tolist() == [[2, 3], [3, 0], [0, 5], [1, 4]]
    assert w.key_index.tolist() == [0, 0, 0, 1]


def test_split_by_time_has_no_overlap_and_scaler_sees_train_only():
    recs = [_rec("a", t, float(t), t) for t in range(100)]
    series = group_by_key(recs)
    scaler = KeyScaler.fit(series, train_fraction=0.8)
    assert scaler.mean[0, 0] == np.mean(np.arange(80))  # the last 20 points are not used
    w = make_windows(series, scaler, length=10)
    tr, va = split_by_time(series, w, val_fraction=0.2)
    assert w.rows[tr].max() < 80 <= w.rows[va].min()
    assert len(tr) == 71 and len(va) == 11  # 9 windows straddle the cut and are dropped


def test_read_history_keeps_every_row_in_order(history_csv):
    h = read_history(history_csv())
    assert [getattr(o.position, "offset", None) for o in h.outcomes] == list(range(len(h.outcomes)))
    assert h.channels == ["a", "b"]
    reasons = {d.position.offset: d.reason for d in h.dead}
    assert set(reasons) == {9, 19, 139}
    assert h.partial[139].key == "x" and np.isnan(h.partial[139].values[0])
