"""Strict JSON for everything streamgen writes: score rows, reports, metrics.

One rule, used by the Kafka sinks, the evaluation report and the backfill report: numpy
scalars and arrays become Python values, tuples become lists, non-finite floats become
``null`` (strict JSON has no NaN or Infinity), mapping keys that JSON cannot take become text.

Examples
--------
>>> import numpy as np
>>> json_safe({"a": np.float64(1.5), "b": [float("nan"), np.int64(2)], "c": (True,)})
{'a': 1.5, 'b': [None, 2], 'c': [True]}
>>> json_safe({"v": np.float32(2.5), "w": np.array([1.0, np.inf]), "f": np.bool_(True)})
{'v': 2.5, 'w': [1.0, None], 'f': True}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["dumps_strict", "json_safe", "write_json"]


def json_safe(obj: Any) -> Any:
    """``obj`` with plain JSON types only (see the module docstring)."""
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int):  # bool is an int
        return obj
    if isinstance(obj, Mapping):
        return {
            k if isinstance(k, str | int | float) or k is None else str(k): json_safe(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays (and tensors)
        return json_safe(obj.tolist())
    return obj


def dumps_strict(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (non-finite floats as ``null``), for files people read."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` to ``path`` as indented strict JSON with a final newline."""
    p = Path(path)
    p.write_text(dumps_strict(obj) + "\n", encoding="utf-8")
    return p
