"""FileSink's JSONL rows are strict JSON: a non-finite float becomes null, never NaN."""

from __future__ import annotations

import json
import math

from streamgen.io.files import FileSink


def test_jsonl_rows_have_no_nan_or_infinity(tmp_path):
    path = tmp_path / "rows.jsonl"
    sink = FileSink(path)
    sink.add({"key": "a", "score": 1.5, "forecast": [[0.25]]})
    sink.add({"key": "b", "score": math.nan, "forecast": [[math.inf], [-math.inf]]})
    sink.flush()
    sink.close()
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    rows = [json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            for line in text.splitlines()]
    assert rows == [
        {"key": "a", "score": 1.5, "forecast": [[0.25]]},
        {"key": "b", "score": None, "forecast": [[None], [None]]},
    ]
