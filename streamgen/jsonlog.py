"""Structured logs for the long-running service: one JSON object per line on stderr.

``setup_logging`` installs :class:`JsonFormatter` on the root logger with a rate limit for
kafka-python's reconnect noise; ``fields(...)`` is the ``extra`` that adds keys to a line::

    log.info("checkpoint", extra=fields(seconds=0.02, records=1000))
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from streamgen.errors import ConfigError

__all__ = ["JsonFormatter", "fields", "setup_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the record's ``fields`` extra."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class RateLimit(logging.Filter):
    """kafka-python logs every failed reconnect at ERROR; keep one line per message per 30 s."""

    def __init__(self, period_s: float = 30.0) -> None:
        super().__init__()
        self.period_s = period_s
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.period_s:
            return False
        self._last[key] = now
        return True


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Structured JSON logs on stderr (replaces a handler installed by an earlier call)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_streamgen", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._streamgen = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RateLimit())
    root.addHandler(handler)
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ConfigError(f"--log-level: unknown level {level!r}")
    root.setLevel(lvl)
    # kafka-python's INFO lines describe every connection and group step; keep its warnings.
    logging.getLogger("kafka").setLevel(max(lvl, logging.WARNING))


def fields(**kw: Any) -> dict[str, Any]:
    """The ``extra`` of a log call whose keywords become keys of the JSON line."""
    return {"fields": kw}
