"""Per-key alert state machine on calibrated scores: N-of-M firing, hysteresis, cooldown.

A point is a *hit* when its calibrated score is ``>=`` the fire threshold
(``alerting.fire_threshold``, default ``calibrate.threshold``). For one key:

- **fire** when at least ``min_count`` of the last ``within`` points are hits;
- **resolve** (hysteresis) only after ``resolve_after`` consecutive points below the resolve
  threshold (``alerting.resolve_threshold``, default 0.75 x fire). A point between the two
  thresholds keeps an open alert open, so a score hovering near the fire threshold produces one
  alert, not a flapping series;
- **cooldown**: for ``cooldown_ms`` of event time after a resolve, that key fires no new alert;
- at most ``max_open`` alerts are open at once.

Alerts fire only on a hit. A fire held back by the cooldown or by ``max_open`` counts once in
:attr:`Alerter.suppressed_total` per run of the N-of-M condition; the first hit after the
cooldown ends (or a slot frees up) fires the alert if the condition still holds. An episode
starts at the first hit of the run of hits that made it fire; ``count`` is the number of hits
in the episode and ``peak`` its highest score.

Per-key state is a bitmask of the last ``within`` hits plus a few numbers, and a key with no
recent hit, no open alert and no running cooldown keeps no state at all.

Examples
--------
>>> from streamgen.config import AlertConfig
>>> alerter = Alerter(AlertConfig(min_count=2, within=3, resolve_after=2), default_threshold=4.0)
>>> events = [alerter.update("pump-1", ts, s) for ts, s in enumerate([1, 5, 1, 6, 3.5, 2, 1])]
>>> [(e.state, e.start_ms, e.end_ms, e.peak, e.count) for e in events if e is not None]
[('firing', 1, None, 6.0, 2), ('resolved', 1, 6, 6.0, 2)]
>>> alerter.is_open("pump-1"), alerter.n_open
(False, 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streamgen.config import AlertConfig
from streamgen.errors import ConfigError

__all__ = ["AlertEvent", "Alerter"]

FIRING = "firing"
RESOLVED = "resolved"
# Default resolve threshold as a fraction of the fire threshold: far enough below it that
# noise around the fire threshold does not resolve an open alert.
RESOLVE_FRACTION = 0.75
_STATE_VERSION = 1


@dataclass(frozen=True)
class AlertEvent:
    """An alert changed state for one key.

    ``end_ms`` is None while firing; ``count`` is the number of anomalous points (hits) in the
    episode so far and ``peak`` the highest calibrated score seen in it.
    """

    key: str
    state: str  # "firing" | "resolved"
    start_ms: int
    end_ms: int | None
    peak: float
    count: int

    def as_dict(self) -> dict[str, object]:
        """Plain dict for an alert output row (docs/architecture.md, "Record and output contracts")."""
        return {
            "key": self.key,
            "state": self.state,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "peak": self.peak,
            "count": self.count,
        }


class _KeyState:
    """Alert state of one key (slots keep it to a few machine words)."""

    __slots__ = (
        "bits",
        "open",
        "start_ms",
        "peak",
        "count",
        "below",
        "cooldown_until_ms",
        "suppressed",
        "run_start_ms",
        "run_peak",
        "run_count",
    )

    def __init__(self) -> None:
        self.bits = 0  # bit i set = the point i steps ago was a hit (i < within)
        self.open = False
        self.start_ms = 0
        self.peak = 0.0
        self.count = 0
        self.below = 0  # consecutive points below the resolve threshold while open
        self.cooldown_until_ms: int | None = None
        self.suppressed = False  # this run of the N-of-M condition was already suppressed
        # The run of hits since the window last held none: where an episode starts.
        self.run_start_ms = 0
        self.run_peak = 0.0
        self.run_count = 0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _KeyState:
        st = cls()
        st.bits = int(data["bits"])
        st.open = bool(data["open"])
        st.start_ms = int(data["start_ms"])
        st.peak = float(data["peak"])
        st.count = int(data["count"])
        st.below = int(data["below"])
        cd = data["cooldown_until_ms"]
        st.cooldown_until_ms = None if cd is None else int(cd)
        st.suppressed = bool(data["suppressed"])
        st.run_start_ms = int(data["run_start_ms"])
        st.run_peak = float(data["run_peak"])
        st.run_count = int(data["run_count"])
        return st


class Alerter:
    """Alert state for every key, driven one calibrated score at a time.

    Parameters
    ----------
    cfg
        The ``alerting`` section of the pipeline.
    default_threshold
        Fire threshold used when ``cfg.fire_threshold`` is None (the calibrator's threshold).

    Raises
    ------
    ConfigError
        If the resolve threshold is above the fire threshold (no hysteresis possible).
    """

    def __init__(self, cfg: AlertConfig, default_threshold: float) -> None:
        self.cfg = cfg
        self.default_threshold = default_threshold
        self.fire_threshold = float(
            cfg.fire_threshold if cfg.fire_threshold is not None else default_threshold
        )
        self.resolve_threshold = (
            float(cfg.resolve_threshold)
            if cfg.resolve_threshold is not None
            else RESOLVE_FRACTION * self.fire_threshold
        )
        if self.resolve_threshold > self.fire_threshold:
            raise ConfigError(
                f"alerting.resolve_threshold: {self.resolve_threshold} must be <= the fire "
                f"threshold {self.fire_threshold}"
            )
        self._mask = (1 << cfg.within) - 1
        self._keys: dict[str, _KeyState] = {}
        self._n_open = 0
        self._suppressed = 0

    # -- queries ---------------------------------------------------------------------------

    def is_open(self, key: str) -> bool:
        """Whether ``key`` has an alert firing right now."""
        st = self._keys.get(key)
        return st is not None and st.open

    @property
    def n_open(self) -> int:
        """Number of alerts firing right now (all keys)."""
        return self._n_open

    @property
    def suppressed_total(self) -> int:
        """Fires held back by a cooldown or by ``max_open`` since this alerter started."""
        return self._suppressed

    def __len__(self) -> int:
        """Number of keys holding alert state."""
        return len(self._keys)

    # -- transitions -----------------------------------------------------------------------

    def update(self, key: str, ts_ms: int, calibrated: float) -> AlertEvent | None:
        """Fold one calibrated score of ``key`` at event time ``ts_ms``.

        Returns the :class:`AlertEvent` when the key's alert fires or resolves, else None.
        A NaN score carries no evidence either way and is ignored.
        """
        # numpy scalars would leak into state_dict and fail torch's weights_only loader
        ts_ms, calibrated = int(ts_ms), float(calibrated)
        if not self.cfg.enabled or math.isnan(calibrated):
            return None
        hit = calibrated >= self.fire_threshold
        st = self._keys.get(key)
        if st is None:
            if not hit:
                return None  # a quiet key with no state stays without state
            st = self._keys[key] = _KeyState()

        st.bits = ((st.bits << 1) | int(hit)) & self._mask
        if hit:
            if st.run_count == 0:
                st.run_start_ms, st.run_peak = ts_ms, calibrated
            st.run_peak = max(st.run_peak, calibrated)
            st.run_count += 1
        elif st.bits == 0:
            st.run_count = 0

        event: AlertEvent | None = None
        if st.open:
            event = self._update_open(key, st, ts_ms, calibrated, hit)
        elif st.bits.bit_count() < self.cfg.min_count:
            st.suppressed = False
        elif hit:  # fire on a hit, never on a low point while older hits linger in the window
            event = self._try_fire(key, st, ts_ms)

        if (
            not st.open
            and st.bits == 0
            and (st.cooldown_until_ms is None or ts_ms >= st.cooldown_until_ms)
        ):
            del self._keys[key]
        return event

    def _update_open(
        self, key: str, st: _KeyState, ts_ms: int, calibrated: float, hit: bool
    ) -> AlertEvent | None:
        st.peak = max(st.peak, calibrated)
        if hit:
            st.count += 1
        st.below = st.below + 1 if calibrated < self.resolve_threshold else 0
        if st.below < self.cfg.resolve_after:
            return None
        event = AlertEvent(key, RESOLVED, st.start_ms, ts_ms, st.peak, st.count)
        self._close(st)
        # A new alert needs fresh evidence: the hits of the resolved episode do not count.
        st.bits = 0
        st.run_count = 0
        if self.cfg.cooldown_ms > 0:
            st.cooldown_until_ms = ts_ms + self.cfg.cooldown_ms
        return event

    def _try_fire(self, key: str, st: _KeyState, ts_ms: int) -> AlertEvent | None:
        cooling = st.cooldown_until_ms is not None and ts_ms < st.cooldown_until_ms
        if cooling or self._n_open >= self.cfg.max_open:
            if not st.suppressed:
                st.suppressed = True
                self._suppressed += 1
            return None
        st.open = True
        st.suppressed = False
        st.cooldown_until_ms = None
        st.below = 0
        st.start_ms, st.peak, st.count = st.run_start_ms, st.run_peak, st.run_count
        self._n_open += 1
        return AlertEvent(key, FIRING, st.start_ms, None, st.peak, st.count)

    def _close(self, st: _KeyState) -> None:
        st.open = False
        st.below = 0
        self._n_open -= 1

    def forget(self, key: str, ts_ms: int) -> AlertEvent | None:
        """Drop ``key`` (evicted); returns its resolved event if an alert was open."""
        st = self._keys.pop(key, None)
        if st is None or not st.open:
            return None
        self._close(st)
        return AlertEvent(key, RESOLVED, st.start_ms, int(ts_ms), st.peak, st.count)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Plain-typed snapshot (loads with ``torch.load(weights_only=True)`` and JSON).

        With ``keys`` (say, the keys of one partition) only those keys are included, and the
        process-wide ``suppressed_total`` is left out so that merging several partitions'
        snapshots does not count it twice.
        """
        if keys is None:
            selected = self._keys
            out: dict[str, Any] = {"version": _STATE_VERSION, "suppressed_total": self._suppressed}
        else:
            # str(): keys may arrive as numpy strings, which must not leak into the state.
            selected = {str(k): self._keys[str(k)] for k in keys if str(k) in self._keys}
            out = {"version": _STATE_VERSION}
        out["keys"] = {k: st.to_dict() for k, st in selected.items()}
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Merge a :meth:`state_dict` snapshot in; its keys replace keys already held."""
        version = state.get("version")
        if version != _STATE_VERSION:
            raise ValueError(f"alert state version {version!r} is not {_STATE_VERSION}")
        for key, data in state["keys"].items():
            old = self._keys.get(key)
            if old is not None and old.open:
                self._n_open -= 1
            st = _KeyState.from_dict(data)
            st.bits &= self._mask
            self._keys[str(key)] = st
            if st.open:
                self._n_open += 1
        self._suppressed += int(state.get("suppressed_total", 0))
