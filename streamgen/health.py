"""The service's health: named problems, the progress watchdog, and what ``/readyz`` says.

A problem (``connect``, ``poll``, ``disconnected``, ``flush``, ``commit``, ``rewind``,
``stalled``) is raised with :meth:`Health.problem` and cleared with :meth:`Health.resolved`,
each change logged once. The service is healthy when it has a consumer and no open problem;
every change is reported to ``Metrics.healthy`` (``/readyz``: 200 or 503) and to the
``on_report`` callback (``ServiceStats.healthy``).

The watchdog (:meth:`Health.watch`): records wait beyond the committed offsets and no commit
moved for ``health.stall_seconds`` = ``stalled``. The position's lag alone would miss a loop
that reads, fails to flush and rewinds: it reads to the end each time, and the lag looks
like zero.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from streamgen.core.ports import Metrics
from streamgen.jsonlog import fields

log = logging.getLogger("streamgen.service")

TP = tuple[str, int]


class Health:
    """Open problems, the time of the last committed progress, and readiness."""

    def __init__(
        self,
        metrics: Metrics,
        stall_seconds: float,
        on_report: Callable[[bool], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.stall_seconds = stall_seconds
        self.on_report = on_report
        self.problems: dict[str, str] = {}
        # Whether the service has its consumer (not healthy before it connects).
        self.connected = False
        # Monotonic time of the last commit that moved an offset forward (or of the start).
        self._progress_t = time.monotonic()

    @property
    def healthy(self) -> bool:
        return not self.problems and self.connected

    def problem(self, what: str, detail: str) -> None:
        if what not in self.problems:
            log.warning("unhealthy", extra=fields(reason=what, detail=detail))
        self.problems[what] = detail
        self.report()

    def resolved(self, what: str) -> None:
        if self.problems.pop(what, None) is not None:
            log.info("recovered", extra=fields(reason=what))
        self.report()

    def report(self) -> None:
        ok = self.healthy
        if self.on_report is not None:
            self.on_report(ok)
        self.metrics.healthy(ok)

    def progressed(self) -> None:
        """A commit moved an offset forward."""
        self._progress_t = time.monotonic()
        self.metrics.progress(time.time())

    def watch(
        self, highs: Mapping[TP, int], committed: Mapping[TP, int], first_seen: Mapping[TP, int]
    ) -> None:
        """The stall watchdog: ``highs`` the partitions' high watermarks; records wait from the
        committed offset (from the first offset seen, before any commit)."""
        waiting = 0
        for tp, high in highs.items():
            done = committed.get(tp, first_seen.get(tp))
            if done is not None:
                waiting += max(0, high - done)
        idle = time.monotonic() - self._progress_t
        if not waiting:
            self._progress_t = time.monotonic()  # nothing waits: not a stall
            self.resolved("stalled")
        elif idle > self.stall_seconds:
            self.problem("stalled", f"no committed progress for {idle:.0f} s with "
                                    f"{waiting} records waiting")
        else:
            self.resolved("stalled")
