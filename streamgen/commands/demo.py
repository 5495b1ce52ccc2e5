"""``streamgen demo``: the whole product on one machine, no Kafka installation needed.

Starts a local Kafka-protocol broker (Tansu, in memory), produces a synthetic multi-key sensor
stream with injected anomalies (and a few malformed records) at ``--rate`` records/s, runs the
consumer service in-process with its metrics endpoint and live status page, prints progress
and alerts as they fire, stops after ``--seconds``, prints a summary and writes a report
(``summary.json``, ``scores.jsonl``, ``alerts.jsonl``, the records sent and the
continuations) to ``--report``, with the evaluation of the scores against the injected
anomalies (the score rows carry their labels): ``metrics.json`` and the plots of
``streamgen evaluate``, made by its code.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamgen.models.registry import MODEL_NAMES

if TYPE_CHECKING:  # imported where used: the parser is built without them (start-up time)
    from streamgen.config import PipelineConfig

# The built-in demo pipeline; pipelines/demo.yaml is a commented copy (a test keeps them equal).
DEMO_PIPELINE: dict[str, Any] = {
    "name": "demo",
    "kafka": {
        "topics": ["demo.sensors"], "group_id": "streamgen-demo", "client_id": "streamgen-demo",
        "auto_offset_reset": "earliest", "scores_topic": "demo.scores",
        "continuations_topic": "demo.continuations", "alerts_topic": "demo.alerts",
        "dead_letter_topic": "demo.dlq",
    },
    "model": {"name": "sota", "hidden": 32, "latent": 8, "horizon": 8,
              "max_steps_per_batch": 2, "train_batch": 64, "warmup_steps": 20,
              "device": "auto"},
    "calibrate": {"threshold": 3.5},
    "window": {"length": 32},
    "batch": {"max_records": 1024, "max_wait_ms": 200},
    "alerting": {"min_count": 2, "within": 5, "resolve_after": 10},
    "checkpoint": {"interval_seconds": 5},
    "metrics": {"host": "127.0.0.1"},
}
# Group settings valid on Apache Kafka and Tansu alike; Tansu holds a join for half the
# session timeout, so the default 45 s would delay the first record by 22 s.
DEMO_GROUP_OPTIONS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
# Random-score seeds of the demo's evaluation (the printed summary compares PR-AUC with the
# label rate; the seeds' baseline is in metrics.json): 3 instead of 10 saves seconds.
EVALUATION_SEEDS = 3
# What the report folder gets besides scores.jsonl, for the evaluation: the records as sent
# (the actual values the plots show) and the continuations (forecasts against what arrived).
STREAM = "stream.jsonl.gz"
CONTINUATIONS = "continuations.jsonl.gz"
MALFORMED_EVERY = 200


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="local broker + synthetic stream + consumer + report")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to stream (60)")
    p.add_argument("--keys", type=int, default=8, help="number of sensors (8)")
    p.add_argument("--rate", type=float, default=400.0, help="records per second (400)")
    p.add_argument("--metrics-port", type=int, default=9108,
                   help="port of the live status page (/) and /metrics /healthz /readyz "
                        "(9108; 0 = any free port)")
    p.add_argument("--report", default="streamgen-demo-report", metavar="DIR",
                   help="report directory (./streamgen-demo-report)")
    p.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="model (default: the demo pipeline's, sota)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
    p.add_argument("--pipeline", metavar="FILE", help="pipeline YAML instead of the built-in")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline setting (repeatable)")
    p.set_defaults(func=run)


def demo_config(args: argparse.Namespace, bootstrap: str, ckpt_dir: str,
                metrics_port: int) -> PipelineConfig:
    from streamgen.config import apply_overrides, build_config, load_pipeline

    cfg = load_pipeline(args.pipeline) if args.pipeline else build_config(DEMO_PIPELINE)
    forced = [
        f"kafka.bootstrap_servers={bootstrap}", f"checkpoint.dir={ckpt_dir}",
        f"metrics.port={metrics_port}",
    ]
    if args.model:
        forced.append(f"model.name={args.model}")
    return apply_overrides(cfg, forced + list(args.overrides))


# -- what the demo watches ----------------------------------------------------------------------


class _Collector:
    """Tee sink for score rows: writes scores.jsonl and keeps what the summary needs."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "w", encoding="utf-8")
        self.rows: dict[tuple[str, int, int], tuple[int, bool, bool]] = {}
        self.lock = threading.Lock()

    def add(self, row: Mapping[str, Any]) -> None:
        from streamgen.io.kafka import encode_row

        self.fh.write(encode_row(row).decode() + "\n")
        pos = (str(row.get("topic")), int(row.get("partition") or 0), int(row.get("offset") or 0))
        with self.lock:  # keep the last row of an offset (a rewind re-emits rows)
            self.rows[pos] = (int(row.get("label") or 0), bool(row.get("is_anomaly")),
                              row.get("error") is not None)

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class _AlertPrinter:
    """Tee sink for alert rows: prints each as it fires or resolves, keeps them for the report."""

    def __init__(self, path: Path, out: Any) -> None:
        self.fh = open(path, "w", encoding="utf-8")
        self.out = out
        self.fired = 0
        self.resolved = 0

    def add(self, row: Mapping[str, Any]) -> None:
        from streamgen.core.engine import iso_ms

        self.fh.write(json.dumps(dict(row), default=str) + "\n")
        start = iso_ms(int(row["start_ms"]))[11:23] if row.get("start_ms") is not None else "?"
        if row.get("state") == "firing":
            self.fired += 1
            print(f"  ALERT firing   {row['key']:<12} since {start}  peak {row['peak']:.1f}",
                  file=self.out, flush=True)
        else:
            self.resolved += 1
            print(f"  alert resolved {row['key']:<12} since {start}  {row['count']} anomalous "
                  f"points, peak {row['peak']:.1f}", file=self.out, flush=True)

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class _Producer(threading.Thread):
    """Emits the synthetic stream at ``rate`` records/s with event time = wall time."""

    def __init__(self, bootstrap: str, topic: str, keys: int, rate: float, seconds: float,
                 seed: int, record: Path | None = None) -> None:
        super().__init__(name="demo-producer", daemon=True)
        from streamgen.bench.synthetic import make_stream

        n_points = max(200, math.ceil(seconds * rate / keys))
        # About one anomaly per 250 points per key, none in the first third (warm-up).
        self.rows = make_stream(
            n_keys=keys, n_points=n_points, seed=seed,
            anomalies_per_key=max(1, n_points // 250), warmup_points=min(300, n_points // 3),
        )
        self.bootstrap, self.topic, self.rate, self.seconds = bootstrap, topic, rate, seconds
        self.record = record  # every record sent, as sent (the evaluation's actual values)
        self.sent = 0
        self.malformed = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _bad(self, i: int, key: str) -> bytes:
        now = round(time.time(), 3)
        kinds = [
            b"{not json",
            json.dumps({"key": key, "x0": 1.0}).encode(),                # missing time
            json.dumps({"key": key, "ts": now, "x0": "n/a"}).encode(),   # non-numeric
            b'{"key": "%s", "ts": %.3f, "x0": Infinity}' % (key.encode(), now),  # non-finite
        ]
        return kinds[i % len(kinds)]

    def run(self) -> None:
        from streamgen.config import KafkaConfig
        from streamgen.io.producers import make_producer

        try:
            producer = make_producer(KafkaConfig(bootstrap_servers=self.bootstrap,
                                                 client_id="streamgen-demo"), quiet=True)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
            self.done.set()
            return
        import gzip

        sent = gzip.open(self.record, "wt", encoding="utf-8") if self.record else None
        try:
            t0 = time.monotonic()
            for i, row in enumerate(self.rows):
                if self._stop.is_set() or time.monotonic() - t0 >= self.seconds:
                    break
                due = t0 + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                key = str(row["key"])
                value = dict(row)
                value["ts"] = round(time.time(), 3)
                text = json.dumps(value)
                producer.send(self.topic, text.encode(), key.encode())
                if sent is not None:
                    sent.write(text + "\n")
                self.sent += 1
                if i % MALFORMED_EVERY == MALFORMED_EVERY - 1:
                    producer.send(self.topic, self._bad(self.malformed, key), key.encode())
                    self.malformed += 1
            producer.flush(30)
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        finally:
            producer.close(timeout=5)
            if sent is not None:
                sent.close()
            self.done.set()


# -- the command ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import logging

    from streamgen.errors import ConfigError
    from streamgen.jsonlog import setup_logging

    if args.seconds <= 0 or args.rate <= 0 or args.keys < 1:
        raise ConfigError("--seconds, --rate and --keys must be positive")
    out = sys.stdout
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    setup_logging("warning")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the demo owns its broker
    # SIGTERM stops the demo as Ctrl-C does (summary, broker stopped, temporary files
    # removed); by default it ended the process at once and left the broker running.
    if threading.current_thread() is not threading.main_thread():
        return _run(args, out, report)  # signal handlers belong to the main thread
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args, out, report)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, out: Any, report: Path) -> int:
    from streamgen.core.engine import Sinks
    from streamgen.io.files import FileSink
    from streamgen.io.metrics import PrometheusMetrics
    from streamgen.localbroker import LocalBroker, create_topic
    from streamgen.service import Service

    port = args.metrics_port
    if port and not _port_free(port):
        print(f"port {port} is busy; serving metrics on a free port instead", file=out)
        port = 0
    with tempfile.TemporaryDirectory(prefix="streamgen-demo-") as ckpt, LocalBroker() as broker:
        cfg = demo_config(args, broker.bootstrap, ckpt, port)
        k = cfg.kafka
        for topic in [*k.topics, k.scores_topic, k.continuations_topic, k.alerts_topic,
                      k.dead_letter_topic]:
            if topic:
                create_topic(broker.bootstrap, topic, 3)
        collector = _Collector(report / "scores.jsonl")
        alerts = _AlertPrinter(report / "alerts.jsonl", out)
        conts = FileSink(report / CONTINUATIONS)  # gzip-compressed JSONL, by its name
        metrics = PrometheusMetrics()
        service = Service(cfg, metrics=metrics, kafka_options=DEMO_GROUP_OPTIONS,
                          tee=Sinks(scores=collector, alerts=alerts, continuations=conts))
        result: dict[str, int] = {}
        svc_thread = threading.Thread(
            target=lambda: result.setdefault("rc", service.run()), name="streamgen-service",
            daemon=True,
        )
        producer = _Producer(broker.bootstrap, k.topics[0], args.keys, args.rate, args.seconds,
                             args.seed, report / STREAM)
        print(f"streamgen demo: broker {broker.bootstrap} (Tansu, in memory), {args.keys} "
              f"sensors at {args.rate:g} records/s for {args.seconds:g} s, model "
              f"{cfg.model.name}", file=out, flush=True)
        svc_thread.start()
        deadline = time.monotonic() + 30
        while (service.metrics_server is None and service.source is None
               and svc_thread.is_alive() and time.monotonic() < deadline):
            time.sleep(0.05)
        metrics_url = None
        if service.metrics_server is not None:
            metrics_url = service.metrics_server.url
            print(f"metrics: {metrics_url}/metrics  (/healthz /readyz)", file=out, flush=True)
            if service.status is not None:
                print(f"live status: {metrics_url}/", file=out, flush=True)
        # Stream only once the consumer owns its partitions, so that every second of the
        # demo is consumed live (a group join takes a few seconds).
        print("waiting for the consumer to join its group ...", file=out, flush=True)
        while not service.stats.assigned and svc_thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        producer.start()
        t0 = time.monotonic()
        try:
            _watch(service, producer, svc_thread, t0, out)
        except KeyboardInterrupt:
            print("interrupted; stopping", file=out, flush=True)
        # A second interrupt while stopping is ignored: the summary and the cleanup follow.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        producer.stop()
        producer.done.wait(35)
        try:
            _drain(service, producer, svc_thread, out)
        except KeyboardInterrupt:
            print("interrupted again; skipping the drain", file=out, flush=True)
        service.stop()
        svc_thread.join(60)
        wall = time.monotonic() - t0
        collector.close()
        alerts.close()
        conts.close()
        summary = _summary(args, cfg, service, producer, collector, alerts, wall)
        summary["metrics_url"] = metrics_url
    evaluation = _evaluate(report, summary, out)
    (report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, report, out)
    _print_evaluation(evaluation, report, out)
    if producer.error is not None:
        print(f"producer failed: {producer.error!r}", file=out)
        return 1
    return int(result.get("rc", 1))


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _status(service: Any, producer: _Producer, t0: float) -> str:
    s = service.stats
    elapsed = time.monotonic() - t0
    span = (s.last_record_s or 0) - (s.first_record_s or 0)
    rate = s.records / span if span > 1 else 0.0
    lag = "?" if s.lag is None else f"{s.lag:,}"
    return (f"[{elapsed:5.0f}s] produced {producer.sent + producer.malformed:,}  scored "
            f"{s.records:,} ({rate:,.0f}/s)  lag {lag}  dead {s.dead_letters}  anomalies "
            f"{s.anomalies}  alerts firing {s.alerts_firing}")


def _watch(service: Any, producer: _Producer, svc: threading.Thread, t0: float,
           out: Any) -> None:
    period = 1.0 if out.isatty() else 2.0
    next_line = t0 + period
    while not producer.done.is_set() and svc.is_alive():
        time.sleep(0.1)
        if time.monotonic() >= next_line:
            print(_status(service, producer, t0), file=out, flush=True)
            next_line += period


def _drain(service: Any, producer: _Producer, svc: threading.Thread, out: Any) -> None:
    """Let the consumer catch up with what was produced (at most 20 s)."""
    target = producer.sent + producer.malformed
    deadline = time.monotonic() + 20
    while service.stats.records < target and svc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if service.stats.records < target:
        print(f"consumer is {target - service.stats.records:,} records behind; stopping anyway",
              file=out, flush=True)


def _summary(args: argparse.Namespace, cfg: PipelineConfig, service: Any, producer: _Producer,
             collector: _Collector, alerts: _AlertPrinter, wall: float) -> dict[str, Any]:
    dead = flagged = false_points = 0
    for label, anom, err in collector.rows.values():
        if err:
            dead += 1
            continue
        flagged += anom
        false_points += anom and not label
    s = service.stats
    span = (s.last_record_s or 0) - (s.first_record_s or 0)
    return {
        "seconds": args.seconds, "keys": args.keys, "target_rate": args.rate,
        "model": cfg.model.name, "records_produced": producer.sent,
        "malformed_produced": producer.malformed, "records_scored": len(collector.rows),
        "dead_letters": dead, "anomalies_flagged": flagged,
        "flagged_outside_segments": false_points,
        "alerts_fired": alerts.fired, "alerts_resolved": alerts.resolved,
        "throughput_records_per_s": round(s.records / span, 1) if span > 0 else None,
        "checkpoints": s.checkpoints, "wall_seconds": round(wall, 1),
    }


def _evaluate(report: Path, summary: dict[str, Any], out: Any) -> dict[str, Any] | None:
    """``streamgen evaluate --scores REPORT/scores.jsonl --report REPORT``, by its code: the
    score rows carry the injected labels. Adds the segment counts to ``summary``."""
    from streamgen.commands.evaluate import evaluate, parse_args
    from streamgen.errors import ConfigError

    print("evaluating the scores against the injected anomalies ...", file=out, flush=True)
    args = parse_args(["--scores", str(report / "scores.jsonl"), "--report", str(report),
                       "--seeds", str(EVALUATION_SEEDS), "--actual", str(report / STREAM),
                       "--continuations", str(report / CONTINUATIONS)])  # fmt: skip
    try:
        result = evaluate(args)
    except ConfigError as exc:  # e.g. a pipeline whose records carry no labels
        print(f"evaluation skipped: {exc}", file=out, flush=True)
        return None
    h = result["detection"]["summary"]
    summary["injected_segments"] = h["segments"]
    summary["segments_detected"] = h["segments_detected"]
    summary["detection_rule"] = (f"a flagged point inside the segment or within "
                                 f"{h['grace_rows']} points after it")  # fmt: skip
    summary["evaluation"] = result["report"]["metrics"]
    return result


def _print_evaluation(result: Mapping[str, Any] | None, report: Path, out: Any) -> None:
    if result is None:
        return
    from streamgen.evaluation.summary import format_summary

    rep = result["report"]
    print("\nevaluation (streamgen evaluate, against the injected anomalies)", file=out)
    format_summary(result["detection"]["summary"], out)
    fc = result.get("forecast")
    if fc:
        print(f"  forecasts     MAE {fc['model']['mae']:.3f} vs {fc['best_naive_mae']} "
              f"{fc[fc['best_naive_mae']]['mae']:.3f} (ratio {fc['ratio_mae']:.2f}) over "
              f"{fc['n_joined']:,} continuations", file=out)  # fmt: skip
    print(f"  metrics       {rep['metrics']} (every metric, random baselines)\n"
          f"  plots         {len(rep['plots'])} PNGs in {report}/: series_*.png (values, "
          f"labelled anomalies, flagged points), score_*.png, continuations.png; "
          f"{rep['keys_note']}\n"
          f"  full table    streamgen evaluate --scores {report}/scores.jsonl --actual "
          f"{report}/{STREAM} --continuations {report}/{CONTINUATIONS} --verbose",
          file=out, flush=True)  # fmt: skip


def _print_summary(s: Mapping[str, Any], report: Path, out: Any) -> None:
    tput = s["throughput_records_per_s"]
    lines = [
        "",
        "summary",
        f"  records       {s['records_produced']:,} produced + {s['malformed_produced']} "
        f"malformed; {s['records_scored']:,} scored, {s['dead_letters']} dead letters",
        f"  anomalies     {s['anomalies_flagged']} points flagged "
        f"({s['flagged_outside_segments']} outside injected segments)",
        f"  alerts        {s['alerts_fired']} fired, {s['alerts_resolved']} resolved",
        f"  throughput    {tput:,.0f} records/s consumed (offered {s['target_rate']:g}/s)"
        if tput else "  throughput    n/a",
        f"  report        {report}/summary.json, scores.jsonl, alerts.jsonl, {STREAM}, "
        f"{CONTINUATIONS}",
    ]
    print("\n".join(lines), file=out, flush=True)
