"""``streamgen replay`` and ``streamgen record``: a round trip through a topic keeps keys,
values, partitions and order; time ranges filter by message timestamp (whatever the broker
answers to offsets_for_times); an interrupted recording resumes without loss or duplicates."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict

import pytest

from streamgen.bench.synthetic import write_stream
from streamgen.cli import main
from streamgen.commands.record import read_lines

pytestmark = pytest.mark.kafka


def _lines(path) -> list[dict]:
    return list(read_lines(path))


def test_replay_record_round_trip(kafka_broker, kafka_topic, tmp_path, capsys):
    bootstrap = kafka_broker.bootstrap
    src = tmp_path / "stream.jsonl"
    write_stream(src, n_keys=5, n_points=400, seed=3)
    with open(src, "a") as fh:
        fh.write("{this is not json\n")
    rows = [line.rstrip("\n") for line in open(src)]
    topic = kafka_topic(3)

    # File -> topic, recorded pace x1000 (1 s steps -> 1 ms): keys become Kafka keys.
    assert main(["replay", str(src), "--bootstrap", bootstrap, "--topic", topic,
                 "--speed", "1000", "--keep-timestamps"]) == 0
    assert f"replayed {len(rows):,} messages" in capsys.readouterr().err

    # Topic -> recording (.gz): everything, positions kept.
    rec = tmp_path / "rec.jsonl.gz"
    assert main(["record", "--bootstrap", bootstrap, "--topic", topic, "--output", str(rec)]) == 0
    lines = _lines(rec)
    assert len(lines) == len(rows)
    values = sorted(json.dumps(ln.get("value", ln.get("value_text")), sort_keys=True)
                    for ln in lines)
    expected = sorted(json.dumps(json.loads(r), sort_keys=True) if r.startswith('{"') else
                      json.dumps(r) for r in rows)
    assert values == expected
    by_part: dict[int, list[int]] = defaultdict(list)
    key_parts: dict[str, set[int]] = defaultdict(set)
    for ln in lines:
        by_part[ln["partition"]].append(ln["offset"])
        if ln["key"] is not None:
            assert ln["key"] == ln["value"]["key"]  # the row's key field became the Kafka key
            key_parts[ln["key"]].add(ln["partition"])
    assert all(offs == list(range(len(offs))) for offs in by_part.values())
    assert all(len(parts) == 1 for parts in key_parts.values())
    # Per key, the recording keeps the source order.
    for key in key_parts:
        src_ts = [json.loads(r)["ts"] for r in rows if r.startswith('{"') and
                  json.loads(r)["key"] == key]
        rec_ts = [ln["value"]["ts"] for ln in sorted(lines, key=lambda x: x["offset"])
                  if ln["key"] == key]
        assert rec_ts == src_ts

    # Time range: message timestamps are the rows' ts (--keep-timestamps).
    t_from, t_to = 1_700_000_100, 1_700_000_199
    part = tmp_path / "part.jsonl"
    assert main(["record", "--bootstrap", bootstrap, "--topic", topic, "--output", str(part),
                 "--from", str(t_from), "--to", str(t_to)]) == 0
    got = _lines(part)
    assert len(got) == 5 * 100
    assert all(t_from * 1000 <= ln["timestamp_ms"] <= t_to * 1000 for ln in got)

    # Resume: keep 40% of the recording plus a torn line, then continue it.
    cut = tmp_path / "cut.jsonl"
    full = [json.dumps(ln, separators=(",", ":")) for ln in lines]
    cut.write_text("\n".join(full[: len(full) * 2 // 5]) + '\n{"topic": "tor')
    assert main(["record", "--bootstrap", bootstrap, "--topic", topic, "--output", str(cut),
                 "--resume"]) == 0
    resumed = _lines(cut)
    assert sorted((ln["partition"], ln["offset"]) for ln in resumed) == \
        sorted((ln["partition"], ln["offset"]) for ln in lines)

    # Recording -> another topic, partitions kept: the same messages come back.
    topic2 = kafka_topic(3)
    assert main(["replay", str(rec), "--bootstrap", bootstrap, "--topic", topic2,
                 "--as-fast-as-possible", "--keep-partitions", "--keep-timestamps"]) == 0
    rec2 = tmp_path / "rec2.jsonl"
    assert main(["record", "--bootstrap", bootstrap, "--topic", topic2, "--output", str(rec2)]) == 0

    def strip(ln: dict) -> dict:
        return {k: v for k, v in ln.items() if k != "topic"}

    assert sorted(map(json.dumps, map(strip, _lines(rec2)))) == \
        sorted(map(json.dumps, map(strip, lines)))


def test_gzip_resume_after_truncation(tmp_path):
    """A gzip recording cut mid-member (a crash) is readable up to the cut."""
    path = tmp_path / "r.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for i in range(1000):
            fh.write(json.dumps({"topic": "t", "partition": 0, "offset": i, "value": {}}) + "\n")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    got = _lines(path)
    assert got and [ln["offset"] for ln in got] == list(range(len(got)))
