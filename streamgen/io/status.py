"""The live status page: what the service is doing, for a person with a browser.

``streamgen run`` and ``streamgen demo`` serve it on the metrics port (``metrics.status_page``,
on by default): ``/`` is the page (``status.html`` next to this module: plain HTML, CSS and a
little JavaScript drawing inline SVG, no network access beyond its own server) and
``/status.json`` what it polls every two seconds.

:class:`StatusCollector` gathers the page's data from what the service already produces, at a
bounded cost:

* **Sinks.** :meth:`StatusCollector.sinks` gives three sinks that the service tees its score,
  continuation and alert rows into. The score sink's ``add`` is a bare ``list.append``
  (the engine holds the batch's rows until it returns anyway); the continuation sink keeps
  the rows of tracked keys only (one dict lookup per row: holding every continuation until
  the digest cost more, in garbage-collector work); alert rows are rare.
* **Per batch.** :meth:`StatusCollector.batch` (on the service thread, after each
  ``Engine.process``) digests the batch's rows: counts per key (``collections.Counter``), the
  batch's highest scores (one ``numpy.argpartition``), and the rows of the tracked keys only,
  whose values it reads back from the engine's window ring (the score rows do not carry
  values). It keeps:

  - *candidates*: at most ``8 × keys`` keys (at least 32) by recent record count (an
    exponentially decaying count, half-life ``HALF_LIFE_S``) and as many by recent peak
    score (also decaying); the rest are forgotten, so an unbounded key space costs nothing;
  - *tracked keys*: the top ``keys`` of each ranking (re-ranked at most every
    ``RANK_EVERY_S``), plus a few that just left them (``3 × keys`` at most), each with a
    fixed-size ring of its last ``history`` points (sequence number, time, first channel's
    value, score, flag) and of its last continuations. A point enters the ring when its key
    is tracked; a key folding more than ``W + H`` points in one batch keeps the newest
    ``W + H`` of them (the window ring holds no more);
  - open alerts (at most ``MAX_OPEN_ALERTS``) and the last ``RECENT_ALERTS`` alert events;
  - one sample per second of the records count and the consumer lag (``RATE_SAMPLES``).

* **Per request.** :meth:`StatusCollector.snapshot` (on the HTTP thread, under the lock that
  :meth:`batch` holds) copies all of this into plain JSON types.

Memory is therefore bounded by the settings, never by the stream: at the defaults (6 keys,
120 points) well under a megabyte.

Examples
--------
>>> c = StatusCollector(keys=2, history=10)
>>> scores, _, alerts = c.sinks()
>>> for i in range(5):
...     scores.add({"key": "a", "ts_ms": i, "score": float(i), "is_anomaly": False,
...                 "error": None})
>>> c.batch(None)
>>> snap = c.snapshot()
>>> snap["busiest"], snap["keys"]["a"]["records"]
(['a'], 5)
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from importlib import resources
from operator import itemgetter
from typing import Any

import numpy as np

__all__ = ["StatusCollector", "page_html"]

HALF_LIFE_S = 30.0  # busiest and most anomalous: what happened in the last minute or so
RANK_EVERY_S = 0.5
RATE_SAMPLES = 180  # one per second: the throughput and lag charts span three minutes
MAX_OPEN_ALERTS = 100
RECENT_ALERTS = 20  # the page lists the newest 10 of them and of the open ones
MAX_CONTINUATIONS = 64  # per tracked key: enough for one whose horizon has arrived
RATE_POINTS = 21  # a tracked key's rate: over its last 20 rankings (10 s)

_KEY = itemgetter("key")
_SCORE = itemgetter("score")


def page_html() -> bytes:
    """The page (``status.html``, package data)."""
    return resources.files("streamgen.io").joinpath("status.html").read_bytes()


def _num(x: Any) -> float | None:
    """A finite float, else None (strict JSON)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _rate(samples: deque[tuple[float, int]]) -> float | None:
    """Records per second between the oldest and the newest sample."""
    if len(samples) < 2:
        return None
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    return round((n1 - n0) / (t1 - t0), 2) if t1 > t0 else None


def _first_channel(steps: Any) -> list[float | None] | None:
    """The first channel of an ``H x C`` forecast or spread (None stays None)."""
    if steps is None:
        return None
    return [_num(s[0]) if isinstance(s, list | tuple) else _num(s) for s in steps]


class _Sink:
    """A sink whose ``add`` appends to a list (a bound method, no Python frame per row)."""

    def __init__(self, rows: list[Any] | None = None, add: Callable[[Any], None] | None = None):
        self.rows: list[Any] = rows if rows is not None else []
        self.add = add if add is not None else self.rows.append

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _TrackedSink:
    """A sink keeping the rows of tracked keys only (continuations: a row for nearly every
    record, each with nested lists; keeping them all until the batch's digest made work for
    the garbage collector that cost more than this lookup does)."""

    def __init__(self, tracked: Mapping[str, Any]) -> None:
        self.rows: list[Any] = []
        self.tracked = tracked

    def add(self, row: Mapping[str, Any]) -> None:
        if row["key"] in self.tracked:
            self.rows.append(row)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Track:
    """What the page shows of one tracked key."""

    __slots__ = ("conts", "count", "last_seen", "points", "rates", "seq")

    def __init__(self, history: int) -> None:
        # (seq, ts_ms, value, score, flagged); seq = the key's point number in the window ring
        self.points: deque[tuple[int, int | None, float | None, float | None, bool]] = deque(
            maxlen=history)
        # (seq of the point the continuation follows, ts_ms, forecast, spread), the last two
        # as the rows hold them (H x C); read when a snapshot asks
        self.conts: deque[tuple[int, int, Any, Any]] = deque(maxlen=MAX_CONTINUATIONS)
        self.count = -1  # the window ring's point count at the last batch (-1: not read yet)
        self.seq = 0  # newest seq in points
        self.last_seen = 0.0  # monotonic time the key was last in a ranking's top
        self.rates: deque[tuple[float, int]] = deque(maxlen=RATE_POINTS)  # (time, records)


class _Ranking:
    """Exponentially decaying per-key values over a bounded set of candidate keys.

    Values are stored scaled by ``2 ** ((t - t0) / half_life)`` so that nothing needs
    decaying between updates; ``value(key)`` undoes the scale."""

    def __init__(self, cap: int, half_life: float, now: float) -> None:
        self.cap = cap
        self.half_life = half_life
        self.t0 = now
        self.values: dict[str, float] = {}

    def scale(self, now: float) -> float:
        s = 2.0 ** ((now - self.t0) / self.half_life)
        if s > 1e12:  # renormalize, rarely
            self.values = {k: v / s for k, v in self.values.items()}
            self.t0, s = now, 1.0
        return s

    def prune(self) -> None:
        if len(self.values) > 2 * self.cap:
            top = sorted(self.values.items(), key=itemgetter(1), reverse=True)[: self.cap]
            self.values = dict(top)

    def top(self, n: int) -> list[str]:
        return [k for k, v in sorted(self.values.items(), key=itemgetter(1), reverse=True)[:n]
                if v > 0]


class StatusCollector:
    """Bounded live state for the status page (see the module docstring).

    Parameters
    ----------
    keys
        Keys shown in each list (busiest, most anomalous).
    history
        Points kept per tracked key.
    info
        Called by :meth:`snapshot` (on the HTTP thread) for the service's live figures: a
        mapping merged into the snapshot (``health``, ``records``, ``lag`` ...).
    """

    def __init__(
        self,
        keys: int = 6,
        history: int = 120,
        *,
        info: Callable[[], Mapping[str, Any]] | None = None,
        name: str = "streamgen",
        model: str = "",
    ) -> None:
        if keys < 1 or history < 2:
            raise ValueError("keys >= 1 and history >= 2")
        self.n_keys = keys
        self.history = history
        self.info = info
        self.name = name
        self.model = model
        self.max_tracked = 3 * keys
        now = time.monotonic()
        cap = max(32, 8 * keys)
        self._busy = _Ranking(cap, HALF_LIFE_S, now)
        self._peak = _Ranking(cap, HALF_LIFE_S, now)
        self._last_peak: dict[str, tuple[float, int | None]] = {}  # key -> (score, ts_ms)
        self._records: dict[str, int] = {}  # tracked keys: rows since tracked
        self._scores = _Sink()
        self.tracked: dict[str, _Track] = {}  # never rebound: _TrackedSink reads it
        self._conts = _TrackedSink(self.tracked)
        self._alerts = _Sink(add=self._alert)
        self.busiest: list[str] = []
        self.anomalous: list[str] = []
        self.open_alerts: dict[str, dict[str, Any]] = {}
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self.samples: deque[tuple[float, int, int | None]] = deque(maxlen=RATE_SAMPLES)
        self.threshold: float | None = None
        self.channel: str | None = None
        self.horizon = 0
        self.batches = 0
        self.started = time.time()
        self._next_rank = 0.0
        self._lock = threading.Lock()

    # -- the hot path -------------------------------------------------------------------------
    def sinks(self) -> tuple[_Sink, _TrackedSink, _Sink]:
        """Sinks for score, continuation and alert rows (tee them next to the real ones)."""
        return self._scores, self._conts, self._alerts

    def _alert(self, row: Mapping[str, Any]) -> None:
        event = {k: row.get(k) for k in ("key", "state", "start_ms", "end_ms", "peak", "count")}
        event["peak"] = _num(event["peak"])
        with self._lock:
            self.recent_alerts.append(event)
            key = str(event["key"])
            if event["state"] == "firing":
                self.open_alerts.pop(key, None)
                self.open_alerts[key] = event
                while len(self.open_alerts) > MAX_OPEN_ALERTS:
                    self.open_alerts.pop(next(iter(self.open_alerts)))
            else:
                self.open_alerts.pop(key, None)

    # -- per batch ----------------------------------------------------------------------------
    def batch(self, engine: Any) -> None:
        """Digest the rows added since the last call (service thread, after a batch).

        ``engine`` is the :class:`~streamgen.core.engine.Engine` whose window ring holds the
        tracked keys' values (None: scores only)."""
        rows, conts = self._scores.rows, self._conts.rows
        if not rows and not conts:
            return
        self._scores.rows = []
        self._scores.add = self._scores.rows.append
        self._conts.rows = []
        now = time.monotonic()
        store = getattr(engine, "store", None)
        with self._lock:
            self.batches += 1
            if engine is not None:
                self.threshold = _num(getattr(engine, "threshold", None))
                chans = getattr(engine, "channels", None)
                self.channel = str(chans[0]) if chans else self.channel
                cfg = getattr(engine, "cfg", None)
                self.horizon = int(cfg.model.horizon) if cfg is not None else self.horizon
            if rows:
                self._rank(rows, now)
                self._points(rows, store)
            if conts:
                self._continuations(conts)

    def _rank(self, rows: list[Mapping[str, Any]], now: float) -> None:
        keys = list(map(_KEY, rows))
        counts = Counter(keys)
        busy, peak = self._busy, self._peak
        s = busy.scale(now)
        vals = busy.values
        done = set()
        for k, n in counts.most_common(2 * self.n_keys):
            if k is not None:  # a dead letter without a key
                vals[k] = vals.get(k, 0.0) + n * s
                done.add(k)
        for k in self.tracked:
            got = counts.get(k)
            if got:
                self._records[k] = self._records.get(k, 0) + got
                if k not in done:
                    vals[k] = vals.get(k, 0.0) + got * s
        # The batch's highest scores (None, a dead letter's, is NaN).
        scores = np.array(list(map(_SCORE, rows)), dtype=float)
        scores[~np.isfinite(scores)] = -np.inf
        m = min(len(scores), 4 * self.n_keys)
        top = np.argpartition(scores, len(scores) - m)[len(scores) - m:]
        s = peak.scale(now)
        pv = peak.values
        for i in top.tolist():
            sc = float(scores[i])
            if not math.isfinite(sc) or sc <= 0:
                continue
            k = keys[i]
            if k is not None and sc * s > pv.get(k, 0.0):
                pv[k] = sc * s
                self._last_peak[k] = (sc, rows[i].get("ts_ms"))
        busy.prune()
        peak.prune()
        if len(self._last_peak) > 4 * peak.cap:
            self._last_peak = {k: self._last_peak[k] for k in pv if k in self._last_peak}
        if now >= self._next_rank or not self.busiest:
            self._next_rank = now + RANK_EVERY_S
            self.busiest = busy.top(self.n_keys)
            self.anomalous = peak.top(self.n_keys)
            for k in (*self.busiest, *self.anomalous):
                t = self.tracked.get(k)
                if t is None:
                    t = self.tracked[k] = _Track(self.history)
                    self._records.setdefault(k, counts.get(k, 0))
                t.last_seen = now
            for k, t in self.tracked.items():
                t.rates.append((now, self._records.get(k, 0)))
            if len(self.tracked) > self.max_tracked:
                keep = set(self.busiest) | set(self.anomalous)
                spare = sorted((t.last_seen, k) for k, t in self.tracked.items() if k not in keep)
                for _, k in spare[: len(self.tracked) - self.max_tracked]:
                    del self.tracked[k]
                    self._records.pop(k, None)

    def _points(self, rows: list[Mapping[str, Any]], store: Any) -> None:
        tracked = self.tracked
        if not tracked:
            return
        mine: dict[str, list[Mapping[str, Any]]] = {}
        for row in [r for r in rows if r["key"] in tracked]:
            if row.get("error") is None:
                mine.setdefault(row["key"], []).append(row)
        if not mine:
            return
        # The tracked keys' rings, read in one gather: newest point last, ``cap`` of each.
        ring: list[list[float]] = []
        slots: list[int | None] = [None] * len(mine)
        if store is not None:
            slots = [store.slots.get(k) for k in mine]
            held = [s for s in slots if s is not None]
            if held:
                cap = store.capacity
                sl = np.array(held)
                idx = (store.head[sl, None] - cap + np.arange(cap)[None, :]) % cap
                ring = np.round(store.data[sl[:, None], idx, 0].astype(float), 6).tolist()
        at = 0
        for (key, krows), slot in zip(mine.items(), slots, strict=True):
            t = tracked[key]
            values: list[float] = []
            total = t.seq + len(krows)
            if slot is not None:
                total = int(store.count[slot])
                if total < t.count:  # the key left the ring and came back: start again
                    t.points.clear()
                    t.conts.clear()
                    t.seq, t.count = 0, -1
                # New since the last batch; a key tracked just now: what its ring holds.
                fresh = total - t.count if t.count >= 0 else total
                n = min(max(fresh, 0), store.capacity, total)
                values = ring[at][len(ring[at]) - n:] if n else []
                at += 1
                t.count = total
            # Align from the newest: the last row is the ring's newest point.
            n = min(max(len(values), len(krows)), self.history)
            for j in range(n):
                seq = total - n + 1 + j
                if seq <= t.seq:
                    continue
                back = n - j  # 1 = newest
                r: Mapping[str, Any] | None = krows[-back] if back <= len(krows) else None
                v = values[-back] if back <= len(values) else None
                if r is None:
                    t.points.append((seq, None, _num(v), None, False))
                else:
                    t.points.append((seq, r.get("ts_ms"), _num(v), _num(r.get("score")),
                                     bool(r.get("is_anomaly"))))
                t.seq = seq

    def _continuations(self, conts: list[Mapping[str, Any]]) -> None:
        tracked = self.tracked
        for c in [c for c in conts if c["key"] in tracked]:
            t = tracked[c["key"]]
            ts = c.get("ts_ms")
            # The point it follows: the newest point of the key with its timestamp.
            seq = next((p[0] for p in reversed(t.points) if p[1] == ts), None)
            if seq is None or ts is None:
                continue
            t.conts.append((seq, int(ts), c.get("forecast"), c.get("spread")))

    # -- per second ---------------------------------------------------------------------------
    def sample(self, records: int, lag: int | None) -> None:
        """Record the running records count and the consumer lag (about once a second)."""
        with self._lock:
            self.samples.append((time.time(), int(records), lag))

    # -- per request --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, in plain JSON types."""
        info = dict(self.info()) if self.info is not None else {}
        with self._lock:
            keys = {k: self._key(k) for k in dict.fromkeys([*self.busiest,
                                                                 *self.anomalous])
                    if k in self.tracked}
            samples = list(self.samples)
            snap: dict[str, Any] = {
                "name": self.name,
                "model": self.model,
                "time": time.time(),
                "started": self.started,
                "threshold": self.threshold,
                "channel": self.channel,
                "horizon": self.horizon,
                "batches": self.batches,
                "busiest": [k for k in self.busiest if k in keys],
                "anomalous": [k for k in self.anomalous if k in keys],
                "keys": keys,
                "alerts": {"open": list(self.open_alerts.values())[::-1],
                           "recent": list(self.recent_alerts)[::-1]},
            }
        rate: list[list[float | None]] = []
        for (t0, r0, _), (t1, r1, lag) in zip(samples, samples[1:], strict=False):
            dt = t1 - t0
            rate.append([t1, round(max(r1 - r0, 0) / dt, 1) if dt > 0 else None, lag])
        recent = [r for _, r, _ in rate[-10:] if r is not None]
        snap["throughput"] = {
            "records_per_s": round(sum(recent) / len(recent), 1) if recent else None,
            "history": rate,  # [time, records/s, lag]
        }
        snap.update(info)
        return snap

    def _key(self, key: str) -> dict[str, Any]:
        t = self.tracked[key]
        pts = list(t.points)
        last = pts[-1] if pts else None
        peak = self._last_peak.get(key)
        out: dict[str, Any] = {
            "records": self._records.get(key, 0),
            "rate": _rate(t.rates),
            "score": last[3] if last else None,
            "anomalous": last[4] if last else False,
            "peak": peak[0] if peak else None,
            "peak_ts_ms": peak[1] if peak else None,
            "points": {
                "seq": [p[0] for p in pts], "ts_ms": [p[1] for p in pts],
                "value": [p[2] for p in pts], "score": [p[3] for p in pts],
                "flag": [p[4] for p in pts],
            },
            "continuation": None,
            "checked": None,
        }
        if t.conts:
            seq, ts, fc_rows, sp_rows = t.conts[-1]
            fc, sp = _first_channel(fc_rows), _first_channel(sp_rows)
            out["continuation"] = {"seq": seq, "ts_ms": ts, "forecast": fc, "spread": sp}
            # The newest continuation whose whole horizon has arrived, against what did.
            by_seq = {p[0]: p[2] for p in pts}
            for seq, ts, fc_rows, sp_rows in reversed(t.conts):
                if not fc_rows or seq + len(fc_rows) > t.seq:
                    continue
                fc, sp = _first_channel(fc_rows) or [], _first_channel(sp_rows)
                actual = [by_seq.get(seq + 1 + i) for i in range(len(fc))]
                if seq + 1 not in by_seq:
                    break  # older than the history kept
                err = [abs(a - f) for a, f in zip(actual, fc, strict=True)
                       if a is not None and f is not None]
                inside = [abs(a - f) <= s for a, f, s in zip(actual, fc, sp or [], strict=False)
                          if a is not None and f is not None and s is not None]
                out["checked"] = {
                    "seq": seq, "ts_ms": ts, "forecast": fc, "spread": sp, "actual": actual,
                    "mae": round(sum(err) / len(err), 6) if err else None,
                    "within_spread": round(sum(inside) / len(inside), 3) if inside else None,
                }
                break
        return out
