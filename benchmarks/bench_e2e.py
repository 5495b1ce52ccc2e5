"""End to end: broker → ``streamgen run`` → broker, against raw kafka-python on the same broker.

Three measurements in one run, on one broker (a local Tansu by default):

1. **raw**: how fast a plain kafka-python group consumer reads ``--records`` records
   (:func:`benchmarks.bench_kafka_raw.raw_consume_rate`): the ceiling of any consumer here.
2. **throughput**: ``--records`` records are produced first (a backlog); ``streamgen run`` then
   consumes them, scores them and writes score rows back; the rate is measured from the first
   score row read back to the last (group join and start-up excluded).
3. **latency**: for each ``--rates`` value, a producer offers that many records/s for
   ``--seconds`` to a fresh topic; latency is the time from a record's production (its ``ts``
   field, wall clock) to its score row being readable on the scores topic. A rate above the
   service's capacity makes the lag, and so the latency, grow for as long as the run lasts:
   those rows are reported as such (with the share of records scored by the end of the drain).
   Beside it, a plain consumer of the load topic (another process) gives the latency of one
   hop through the broker for the same records at the same time: the floor under the
   service's two hops. (The local Tansu's in-memory topics get slower to fetch from as they
   grow: that hop's p99 rose from ~20 ms to ~120 ms over 60 s at 5,000 records/s.)

Throughput and latency are measured once per output producer of the service
(``--producers kafka-python,confluent``: ``kafka.producer`` of the pipeline), side by side in
one run, with the ratio to the raw rate; per stage, the service's own stage timings
(``streamgen_stage_latency_seconds`` sums, scraped from its ``/metrics``) say where each
record's time went.

The service runs as a subprocess (``python -m streamgen run``), as in production; the load
producer and the score reader run in this process, on confluent-kafka when it is installed
(they cost the service's CPU less than kafka-python would on a small machine). Prints a
table, and one JSON line with ``--json``.

Usage::

    python benchmarks/bench_e2e.py                       # local Tansu, default pipeline model
    python benchmarks/bench_e2e.py --rates 1000,5000 --seconds 30 --set model.hidden=32
    python benchmarks/bench_e2e.py --bootstrap kafka:9092 --json
    python benchmarks/bench_e2e.py --producers kafka-python,confluent --rates 5000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `streamgen` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from benchmarks.bench_kafka_raw import raw_consume_rate  # noqa: E402
from streamgen.config import KafkaConfig  # noqa: E402
from streamgen.io.producers import make_producer, producer_kind  # noqa: E402
from streamgen.localbroker import TEST_GROUP_CONFIG, LocalBroker, create_topic, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEYS = 100


def _value(seq: int, rng: random.Random, ts: float) -> bytes:
    # A sine per key plus noise: something the model can learn, like a sensor.
    key = seq % KEYS
    x = np.sin(2 * np.pi * (seq // KEYS) / (20 + key % 17)) + rng.gauss(0.0, 0.1)
    return json.dumps({"ts": round(ts, 3), "key": f"sensor-{key}", "x0": round(float(x), 5)},
                      separators=(",", ":")).encode()


def produce(bootstrap: str, topic: str, n: int, rate: float | None = None,
            seconds: float | None = None) -> int:
    """Produce keyed records (``ts`` = wall time at send); paced when ``rate`` is given."""
    rng = random.Random(0)
    producer = make_producer(KafkaConfig(bootstrap_servers=bootstrap), quiet=True)
    keys = [f"sensor-{i}".encode() for i in range(KEYS)]
    t0 = time.monotonic()
    sent = 0
    try:
        for seq in range(n):
            if rate is not None:
                due = t0 + seq / rate
                if seconds is not None and due - t0 >= seconds:
                    break
                delay = due - time.monotonic()
                if delay > 0.002:
                    time.sleep(delay)
            producer.send(topic, _value(seq, rng, time.time()), keys[seq % KEYS])
            sent += 1
        if not producer.flush(300):
            raise TimeoutError(f"{topic}: load not acknowledged within 300 s")
    finally:
        producer.close(timeout=10)
    return sent


# A plain kafka-python consumer of the load topic in its own process (the GIL of this one
# is busy producing and reading scores): on a line from stdin (t0) it stops and prints the
# latency percentiles, in ms, of the records produced at or after t0.
_HOP_READER = r"""
import json, sys, threading, time
import numpy as np
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic = sys.argv[1], sys.argv[2]
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                  auto_offset_reset="earliest", fetch_max_wait_ms=10)
parts = None
while not parts:
    parts = c.partitions_for_topic(topic)
    time.sleep(0.05)
c.assign([TopicPartition(topic, p) for p in parts])
t0 = []
threading.Thread(target=lambda: t0.append(float(sys.stdin.readline())), daemon=True).start()
seen = []
while not t0:
    batch = c.poll(timeout_ms=50, max_records=10_000)
    now = time.time()
    seen += [(json.loads(r.value)["ts"], now) for rs in batch.values() for r in rs]
lat = np.array([now - ts for ts, now in seen if ts >= t0[0]]) * 1000.0
print(json.dumps({"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                  "p99": float(np.percentile(lat, 99)) if len(lat) else None}))
"""


def start_hop_reader(bootstrap: str, topic: str) -> subprocess.Popen[str]:
    """The broker's one-hop latency on ``topic``, measured by another process (see
    :func:`hop_latency`)."""
    return subprocess.Popen([sys.executable, "-c", _HOP_READER, bootstrap, topic],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def hop_latency(proc: subprocess.Popen[str], t0: float) -> dict[str, float | None]:
    """Stop the hop reader; p50/p99 ms of the records produced at or after ``t0``."""
    try:
        out, _ = proc.communicate(f"{t0}\n", timeout=60)
        return dict(json.loads(out.strip().splitlines()[-1]))
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        proc.kill()
        return {"p50": None, "p99": None}


class ScoreReader(threading.Thread):
    """Reads the scores topic from the start; notes when each row became readable."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.arrivals: list[tuple[float, float | None]] = []  # (read at, event ts s)
        self.stop_event = threading.Event()
        self.seen: set[tuple[int, int]] = set()

    def _note(self, value: bytes, now: float) -> None:
        row = json.loads(value)
        pos = (row["partition"], row["offset"])
        if pos in self.seen:
            return  # a duplicate: latency counts the first arrival
        self.seen.add(pos)
        ts = row.get("ts_ms")
        self.arrivals.append((now, None if ts is None else ts / 1000.0))

    def run(self) -> None:
        if producer_kind("auto") == "confluent":
            self._run_confluent()
            return
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 fetch_max_wait_ms=10)
        try:
            tps: list[TopicPartition] = []
            while not tps and not self.stop_event.is_set():
                tps = [TopicPartition(self.topic, p)
                       for p in (consumer.partitions_for_topic(self.topic) or ())]
                time.sleep(0.05)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self.stop_event.is_set():
                batch = consumer.poll(timeout_ms=50, max_records=10_000)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        self._note(r.value, now)
        finally:
            consumer.close()

    def _run_confluent(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer
        from confluent_kafka import TopicPartition as CTP

        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        try:
            parts: list[int] = []
            while not parts and not self.stop_event.is_set():
                md = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                parts = sorted(md.partitions) if md is not None and not md.error else []
                time.sleep(0.05)
            consumer.assign([CTP(self.topic, p, OFFSET_BEGINNING) for p in parts])
            while not self.stop_event.is_set():
                msgs = consumer.consume(10_000, 0.05)
                now = time.time()
                for m in msgs:
                    if m.error() is None:
                        self._note(m.value(), now)
        finally:
            consumer.close()

    def count(self) -> int:
        return len(self.arrivals)

    def count_since(self, t0: float) -> int:
        return sum(1 for _, ts in list(self.arrivals) if ts is not None and ts >= t0)


def start_service(bootstrap: str, topic: str, scores: str, workdir: Path,
                  overrides: list[str], producer: str = "auto",
                  metrics_port: int | None = None, group_id: str | None = None,
                  checkpoint_dir: Path | None = None,
                  log_level: str = "warning") -> subprocess.Popen[bytes]:
    """``streamgen run`` as a subprocess, its log in ``workdir/service.log``; several members
    of one group share ``group_id`` and ``checkpoint_dir``."""
    pipeline = {
        "kafka": {"bootstrap_servers": bootstrap, "topics": [topic],
                  "group_id": group_id or f"bench-e2e-{uuid.uuid4().hex[:8]}",
                  "scores_topic": scores,
                  "continuations_topic": None, "alerts_topic": None,
                  "dead_letter_topic": None, "producer": producer},
        "checkpoint": {"dir": str(checkpoint_dir or workdir / "ckpt"), "interval_seconds": 10},
        "metrics": {"enabled": metrics_port is not None, "port": metrics_port or 0},
        "decode": {"label_field": None},
    }
    path = workdir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    cmd = [sys.executable, "-m", "streamgen", "run", str(path), "--log-level", log_level]
    for k, v in TEST_GROUP_CONFIG.items():
        cmd += ["--kafka-option", f"{k}={v}"]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(workdir / "service.log", "wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


STAGES = ("decode", "window", "score", "learn", "total", "checkpoint")


def scrape_stages(port: int) -> dict[str, float]:
    """Seconds spent per stage so far (``streamgen_stage_latency_seconds_sum``)."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("streamgen_stage_latency_seconds_sum{"):
            stage = line.split('stage="', 1)[1].split('"', 1)[0]
            out[stage] = float(line.rsplit(" ", 1)[1])
    return out


def per_record_us(stages: dict[str, float], records: int, wall_s: float) -> dict[str, float]:
    """µs per record in each stage; ``emit`` (rows built and handed to the producer) is the
    engine's total less its named stages; ``outside`` is the rest of the wall time (polling
    Kafka, the consumer's thread, waiting)."""
    if not stages or records <= 0:
        return {}
    us = {k: 1e6 * v / records for k, v in stages.items()}
    named = sum(us.get(k, 0.0) for k in ("decode", "window", "score", "learn"))
    out = {k: round(us.get(k, 0.0), 1) for k in ("decode", "window", "score", "learn")}
    out["emit"] = round(us.get("total", 0.0) - named, 1)
    out["checkpoint"] = round(us.get("checkpoint", 0.0), 1)
    out["wall"] = round(1e6 * wall_s / records, 1)
    out["outside"] = round(out["wall"] - us.get("total", 0.0) - out["checkpoint"], 1)
    return out


def service_failure(proc: subprocess.Popen[bytes], workdir: Path) -> str | None:
    """The end of the service's log if it exited on its own (else None)."""
    if proc.poll() is None:
        return None
    try:
        tail = (workdir / "service.log").read_text(errors="replace")[-1500:]
    except OSError:
        tail = ""
    return f"service exited with {proc.returncode}: {tail}"


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def bench_throughput(bootstrap: str, n: int, workdir: Path, overrides: list[str],
                     timeout_s: float, producer: str = "auto") -> dict[str, Any]:
    topic, scores = f"e2e-in-{uuid.uuid4().hex[:8]}", f"e2e-scores-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, scores, 3)
    produce(bootstrap, topic, n)
    reader = ScoreReader(bootstrap, scores)
    reader.start()
    port = free_port()
    proc = start_service(bootstrap, topic, scores, workdir, overrides, producer, port)
    deadline = time.monotonic() + timeout_s
    stages: dict[str, float] = {}
    try:
        while reader.count() < n and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        stages = scrape_stages(port)
        failure = service_failure(proc, workdir)
    finally:
        stop_service(proc)
        reader.stop_event.set()
        reader.join(10)
    got = reader.count()
    times = [t for t, _ in reader.arrivals]
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    # Stage sums cover every batch since start-up; the wall time is the scoring span.
    return {"records": n, "scored": got, "rate": (got - 1) / span if span > 0 else float("nan"),
            "us_per_record": per_record_us(stages, got, span) if span > 0 else {},
            "service_failure": failure}


def bench_latency(bootstrap: str, rate: float, seconds: float, workdir: Path,
                  overrides: list[str], drain_s: float, producer: str = "auto") -> dict[str, Any]:
    topic, scores = f"lat-in-{uuid.uuid4().hex[:8]}", f"lat-scores-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, scores, 3)
    reader = ScoreReader(bootstrap, scores)
    reader.start()
    hop = start_hop_reader(bootstrap, topic)
    t0 = time.time()
    proc = start_service(bootstrap, topic, scores, workdir, overrides, producer)
    try:
        # Offer load only once the service scores: produce a trickle until the first row.
        warm_deadline = time.monotonic() + 120
        while reader.count() == 0 and time.monotonic() < warm_deadline:
            produce(bootstrap, topic, KEYS)
            time.sleep(0.5)
        time.sleep(1.0)  # let the warm-up trickle drain
        t0 = time.time()
        sent = produce(bootstrap, topic, int(rate * seconds) + 1, rate=rate, seconds=seconds)
        offered_s = time.time() - t0
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if reader.count_since(t0) >= sent:
                break
            time.sleep(0.25)
        drained_at = time.time()
        failure = service_failure(proc, workdir)
    finally:
        stop_service(proc)
        reader.stop_event.set()
        reader.join(10)
        floor = hop_latency(hop, t0)
    measured = [(t, ts) for t, ts in reader.arrivals if ts is not None and ts >= t0]
    lat = np.array([t - ts for t, ts in measured])
    scored = len(measured)
    row: dict[str, Any] = {
        "offered_rate": rate, "seconds": seconds, "sent": sent,
        "achieved_offered_rate": sent / offered_s if offered_s > 0 else float("nan"),
        "scored": scored, "scored_fraction": scored / sent if sent else float("nan"),
        "p50_ms": float(np.percentile(lat, 50) * 1000) if scored else float("nan"),
        "p99_ms": float(np.percentile(lat, 99) * 1000) if scored else float("nan"),
        "max_ms": float(lat.max() * 1000) if scored else float("nan"),
        # One hop load producer -> broker -> plain consumer, same records, same time.
        "hop_p50_ms": floor["p50"] if floor["p50"] is not None else float("nan"),
        "hop_p99_ms": floor["p99"] if floor["p99"] is not None else float("nan"),
        "drain_s": round(drained_at - (t0 + offered_s), 1),
        "service_failure": failure,
    }
    if scored:
        times = sorted(t for t, _ in measured)
        row["score_rate"] = (scored - 1) / max(times[-1] - times[0], 1e-9)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", help="existing broker (default: start a local Tansu)")
    p.add_argument("--records", type=int, default=20_000, help="backlog size for throughput")
    p.add_argument("--rates", default="1000,5000", help="offered loads, records/s")
    p.add_argument("--seconds", type=float, default=30.0, help="duration of each offered load")
    p.add_argument("--drain-seconds", type=float, default=60.0,
                   help="wait this long after the load for the last scores")
    p.add_argument("--producers", default=None,
                   help="service output producers to compare, comma-separated (kafka-python, "
                        "confluent, auto); default: both when confluent-kafka is installed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline override for the service (repeatable)")
    p.add_argument("--json", action="store_true", help="also print one line of JSON")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.producers is None:
        producers = (["kafka-python", "confluent"] if producer_kind("auto") == "confluent"
                     else ["kafka-python"])
    else:
        producers = [x.strip() for x in args.producers.split(",") if x.strip()]
    for kind in producers:
        if kind not in ("auto", "kafka-python", "confluent"):
            p.error(f"--producers: unknown producer {kind!r}")
        producer_kind(kind)  # ConfigError now if confluent-kafka is missing

    broker = None
    if args.bootstrap:
        bootstrap, broker_name = args.bootstrap, "external"
    else:
        broker = LocalBroker().start()
        bootstrap, broker_name = broker.bootstrap, "tansu-memory"
    result: dict[str, Any] = {"benchmark": "e2e", "broker": broker_name,
                              "overrides": args.overrides, "producers": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            raw_topic = f"raw-{uuid.uuid4().hex[:8]}"
            create_topic(bootstrap, raw_topic, 3)
            produce(bootstrap, raw_topic, args.records)
            result["raw_consume_rate"] = raw_consume_rate(bootstrap, raw_topic, args.records)
            for kind in producers:
                run: dict[str, Any] = {}
                work = Path(tmp) / kind / "t"
                work.mkdir(parents=True)
                run["throughput"] = bench_throughput(
                    bootstrap, args.records, work, args.overrides, timeout_s=600, producer=kind)
                run["latency"] = []
                for i, rate in enumerate(rates):
                    work = Path(tmp) / kind / f"l{i}"
                    work.mkdir(parents=True, exist_ok=True)
                    run["latency"].append(bench_latency(
                        bootstrap, rate, args.seconds, work, args.overrides,
                        args.drain_seconds, producer=kind))
                result["producers"][kind] = run
    finally:
        if broker is not None:
            broker.close()
    _table(result)
    for kind, run in result["producers"].items():
        for part in [run["throughput"], *run["latency"]]:
            if part.get("service_failure"):
                print(f"\n{kind}: {part['service_failure']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


def _table(r: dict[str, Any]) -> None:
    raw = r["raw_consume_rate"]
    print(f"broker: {r['broker']}   service overrides: {r['overrides'] or 'none'}")
    print(f"{'measurement':<52}{'records/s':>12}{'vs raw':>9}")
    print(f"{'raw kafka-python consume (group)':<52}{raw:>12,.0f}{'1.00':>9}")
    for kind, run in r["producers"].items():
        tp = run["throughput"]
        label = f"streamgen broker→score→broker, {kind} producer"
        print(f"{label:<52}{tp['rate']:>12,.0f}{tp['rate'] / raw:>9.3f}   "
              f"({tp['scored']:,}/{tp['records']:,} scored)")
    stages = {k: run["throughput"].get("us_per_record") for k, run in r["producers"].items()}
    if any(stages.values()):
        cols = ("decode", "window", "score", "learn", "emit", "checkpoint", "outside", "wall")
        print()
        print("µs per record by stage (backlog run; emit = rows built + producer send,")
        print("checkpoint includes the flush, outside = polling Kafka and the rest):")
        print(f"{'producer':<14}" + "".join(f"{c:>11}" for c in cols))
        for kind, us in stages.items():
            if us:
                print(f"{kind:<14}" + "".join(f"{us.get(c, float('nan')):>11,.1f}" for c in cols))
    print()
    print(f"{'producer':<14}{'offered/s':>10}{'sent':>9}{'scored':>9}{'scored/s':>10}"
          f"{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'hop p50':>9}{'hop p99':>9}  note")
    for kind, run in r["producers"].items():
        for row in run["latency"]:
            rate = row.get("score_rate", float("nan"))
            kept_up = row["scored_fraction"] >= 0.999 and row["drain_s"] <= 5
            if kept_up:
                note = "kept up"
            else:
                note = (f"did not keep up: scored at {rate:,.0f}/s, backlog drained "
                        f"{row['drain_s']:.0f} s after the load ended"
                        if row["scored_fraction"] >= 0.999 else
                        f"did not keep up: {100 * row['scored_fraction']:.0f}% scored within "
                        "the drain (latencies of the scored ones only)")
            print(f"{kind:<14}{row['offered_rate']:>10,.0f}{row['sent']:>9,}{row['scored']:>9,}"
                  f"{rate:>10,.0f}{row['p50_ms']:>10,.0f}"
                  f"{row['p99_ms']:>10,.0f}{row['max_ms']:>10,.0f}"
                  f"{row.get('hop_p50_ms', float('nan')):>9,.0f}"
                  f"{row.get('hop_p99_ms', float('nan')):>9,.0f}  {note}")
    print("(hop: one pass load producer -> broker -> a plain consumer of the load topic, same "
          "records at the same time;\n the service's path makes two such passes, in and out)")


if __name__ == "__main__":
    sys.exit(main())
