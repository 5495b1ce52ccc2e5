"""Shared helpers of the Kafka integration tests: produce labelled streams, read topics back,
start ``streamgen run`` as a subprocess and follow its JSON log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgen.bench.synthetic import make_stream

ROOT = Path(__file__).resolve().parents[2]

# Small and fast: these tests are about delivery, not detection quality.
SMALL_MODEL = {
    "model": {"hidden": 16, "latent": 4, "horizon": 4, "max_steps_per_batch": 1,
              "train_batch": 32, "warmup_steps": 10, "device": "cpu"},
    "window": {"length": 16},
    "calibrate": {"warmup_windows": 10},
}
GROUP_OPTIONS = ["session_timeout_ms=6000", "heartbeat_interval_ms=1000"]

try:
    import confluent_kafka  # noqa: F401

    HAVE_CONFLUENT = True
except ImportError:
    HAVE_CONFLUENT = False

# kafka.producer values for tests run with each output producer.
PRODUCERS = [
    "kafka-python",
    pytest.param("confluent", marks=pytest.mark.skipif(
        not HAVE_CONFLUENT, reason="confluent-kafka not installed")),
]

# One of each kind of bad record the decoder rejects.
MALFORMED = [
    b"{not json",
    b'{"key": "k", "x0": 1.0}',                      # missing time
    b'{"ts": 1700000000, "x0": "n/a"}',              # non-numeric
    b'{"ts": 1700000000, "x0": Infinity}',           # non-finite
    b"[1, 2, 3]",                                    # not an object
    b"",                                             # empty
]


@dataclass
class Sent:
    """What a test produced: (partition, offset) → (key, good?)."""

    topic: str
    records: dict[tuple[int, int], tuple[str, bool]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def good_per_key(self) -> Counter[str]:
        return Counter(k for k, good in self.records.values() if good)

    def ends(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p, o in self.records:
            out[p] = max(out.get(p, -1), o)
        return out


def read_input(bootstrap: str, topic: str, timeout_s: float = 30.0) -> Sent:
    """What is really on ``topic``: producer metadata of a retried (deduplicated) send can say
    offset -1, so tests take positions from the topic itself."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    sent = Sent(topic)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300, max_records=10_000)
            for tp in tps:
                if tp not in end and consumer.highwater(tp) is not None:
                    end[tp] = consumer.highwater(tp)
            for tp, records in batch.items():
                for r in records:
                    sent.records[(tp.partition, r.offset)] = (
                        r.key.decode(), (r.value or b"") not in MALFORMED)
            if len(end) == len(tps) and all(consumer.position(tp) >= end[tp] for tp in tps):
                return sent
        raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
    finally:
        consumer.close()


def stream_rows(n_keys: int, n_points: int, seed: int = 0) -> list[dict[str, object]]:
    return make_stream(n_keys=n_keys, n_points=n_points, seed=seed, warmup_points=100)


def produce(bootstrap: str, topic: str, rows: list[dict[str, object]], *,
            malformed_every: int = 0, rate: float | None = None, sent: Sent | None = None,
            stop: threading.Event | None = None) -> Sent:
    """Send rows keyed by their key (plus malformed ones); record every offset."""
    sent = sent or Sent(topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             retries=2**31 - 1, delivery_timeout_ms=120_000)
    futures: list[tuple[Any, str, bool]] = []
    t0 = time.monotonic()
    n_bad = 0
    try:
        for i, row in enumerate(rows):
            if stop is not None and stop.is_set():
                break
            if rate:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            key = str(row["key"])
            futures.append((producer.send(topic, key=key.encode(),
                                          value=json.dumps(row).encode()), key, True))
            if malformed_every and i % malformed_every == malformed_every - 1:
                bad = MALFORMED[n_bad % len(MALFORMED)]
                n_bad += 1
                futures.append((producer.send(topic, key=key.encode(), value=bad), key, False))
            if len(futures) >= 500:
                _collect(futures, sent)
        producer.flush(timeout=120)
        _collect(futures, sent)
    finally:
        producer.close(timeout=10)
    return sent


def _collect(futures: list[tuple[Any, str, bool]], sent: Sent) -> None:
    for fut, key, good in futures:
        md = fut.get(timeout=120)
        with sent.lock:
            sent.records[(md.partition, md.offset)] = (key, good)
    futures.clear()


class Producing(threading.Thread):
    """``produce`` in a background thread (a live stream)."""

    def __init__(self, bootstrap: str, topic: str, rows: list[dict[str, object]], **kw: Any):
        super().__init__(daemon=True)
        self.sent = Sent(topic)
        self.args = (bootstrap, topic, rows)
        self.kw = kw
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            produce(*self.args, sent=self.sent, **self.kw)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def finish(self, timeout: float = 120) -> Sent:
        self.join(timeout)
        assert not self.is_alive(), "producer did not finish"
        if self.error is not None:
            raise self.error
        return self.sent


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every message of ``topic`` up to its current end, values parsed as JSON."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        end: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300, max_records=10_000)
            for tp in tps:
                if tp not in end and consumer.highwater(tp) is not None:
                    end[tp] = consumer.highwater(tp)
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records)
            if len(end) == len(tps) and all(consumer.position(tp) >= end[tp] for tp in tps):
                return out
        raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
    finally:
        consumer.close()


def write_pipeline(path: Path, bootstrap: str, topic: str, ckpt: Path | None, *,
                   group: str, prefix: str, interval_s: float = 1.0, small: bool = True,
                   **sections: dict[str, Any]) -> Path:
    """A ``streamgen run`` pipeline file; ``small=False`` keeps the default model and window
    (on CPU) instead of :data:`SMALL_MODEL`; ``sections`` update the named sections."""
    cfg: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "topics": [topic], "group_id": group,
                  "scores_topic": f"{prefix}.scores", "continuations_topic": None,
                  "alerts_topic": f"{prefix}.alerts", "dead_letter_topic": f"{prefix}.dlq",
                  "reconnect_backoff_max_seconds": 2},
        "checkpoint": {"dir": None if ckpt is None else str(ckpt),
                       "interval_seconds": interval_s},
        "metrics": {"enabled": False},
        **(SMALL_MODEL if small else {"model": {"device": "cpu"}}),
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(cfg))
    return path


class RunProcess:
    """``python -m streamgen run PIPELINE`` with its JSON log captured to a file."""

    def __init__(self, pipeline: Path, log_path: Path, *extra: str) -> None:
        self.log_path = log_path
        self._fh = open(log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "streamgen", "run", str(pipeline)]
        for opt in GROUP_OPTIONS:
            cmd += ["--kafka-option", opt]
        self.proc = subprocess.Popen([*cmd, *extra], stdout=self._fh, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env=env)
        self._start = self.log_path.stat().st_size

    def logs(self) -> list[dict[str, Any]]:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._start)
            out = []
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
            return out

    def wait_log(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float,
                 what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for rec in self.logs():
                if pred(rec):
                    return rec
            if self.proc.poll() is not None:
                raise AssertionError(f"streamgen run exited ({self.proc.returncode}) before "
                                     f"{what}:\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        self._fh.close()
        return rc


def resumed_offsets(logs: Iterable[dict[str, Any]]) -> dict[int, int]:
    return {int(r["partition"]): int(r["offset"]) for r in logs
            if r.get("msg") == "partition resumed from checkpoint"}


def checkpointed_offsets(logs: Iterable[dict[str, Any]]) -> dict[int, int]:
    """Latest checkpointed offset per partition from ``checkpoint`` log lines."""
    out: dict[int, int] = {}
    for r in logs:
        if r.get("msg") == "checkpoint":
            for name, off in r["offsets"].items():
                out[int(name.rsplit("-", 1)[1])] = int(off)
    return out


def score_positions(scores: list[dict[str, Any]], topic: str) -> Counter[tuple[int, int]]:
    return Counter((int(s["partition"]), int(s["offset"])) for s in scores
                   if s.get("topic") == topic)


def window_counts(ckpt: Path) -> dict[str, int]:
    """Points folded into each key's window state, from the partition checkpoints."""
    from streamgen.core import checkpoint

    out: dict[str, int] = defaultdict(int)
    for path in sorted((ckpt / "partitions").glob("*.pt")):
        state = checkpoint.load(path)
        if state["keys"] is None:
            continue
        win = state["keys"]["windows"]
        for key, count in zip(win["keys"], win["count"].tolist(), strict=True):
            out[key] += int(count)
    return dict(out)


def interval_records(logs: Iterable[dict[str, Any]]) -> list[int]:
    """Records processed in each checkpoint interval of one run (from its ``checkpoint`` log
    lines; the first interval counts from the start of the run)."""
    counts, prev = [], 0
    for r in logs:
        if r.get("msg") == "checkpoint":
            counts.append(int(r["records"]) - prev)
            prev = int(r["records"])
    return counts


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (psutil when installed, else ``/proc/PID/status``)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {pid}") from None
    return int(psutil.Process(pid).memory_info().rss)


def scrape(url: str, timeout_s: float = 5.0) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of the Prometheus exposition at ``url``: (name, labels, value)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text = resp.read().decode()
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]
