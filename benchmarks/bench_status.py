"""What the live status page costs the hot path (streamgen/io/status.py).

The engine scores a synthetic multi-key stream in micro-batches, as the service runs it,
twice per repeat (in the order ABBA...): with its score, continuation and alert sinks only (no-op
sinks, so that the output's own cost does not hide the difference), and with the status
collector teed next to them and digesting after every batch (``StatusCollector.batch``), as
``streamgen run`` does with ``metrics.status_page: true``. Reported, in CPU time of this
process (torch on one thread; steadier than wall time on a shared machine): the engine's rate
both ways (median of the repeats) and, measured directly, the collector's own time per record
(its ``add`` calls and its per-batch digest; the snapshot runs on the HTTP thread, per
request, and is timed separately).

Usage::

    python benchmarks/bench_status.py                       # 200 keys, 300 points each
    python benchmarks/bench_status.py --keys 2000 --points 50 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.io.status import StatusCollector
from streamgen.records import Position
from streamgen.service import TeeSink


class NullSink:
    def add(self, row: Mapping[str, object]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TimedCollector(StatusCollector):
    """The collector, with the time spent in its per-batch digest added up."""

    spent = 0.0

    def batch(self, engine: Any) -> None:
        # The batch's rows are freed when the digest drops them, not inside the engine as
        # without the page: that moved (not added) time stays out of the count.
        rows, conts = self._scores.rows, self._conts.rows
        t0 = time.process_time()
        super().batch(engine)
        self.spent += time.process_time() - t0
        del rows, conts


def make_messages(keys: int, points: int, seed: int) -> list[RawMessage]:
    rng = np.random.default_rng(seed)
    out = []
    period = rng.uniform(20, 80, keys)
    for i in range(points):
        x = np.sin(2 * np.pi * i / period) + 0.2 * rng.normal(size=keys)
        spikes = rng.random(keys) < 0.003
        x[spikes] += 6.0
        for k in range(keys):
            body = json.dumps({"key": f"k{k}", "ts": 1_700_000_000 + i,
                               "x": round(float(x[k]), 5)}).encode()
            out.append(RawMessage(body, Position("t", 0, len(out))))
    return out


def run(msgs: list[RawMessage], cfg: PipelineConfig, batch: int,
        status: bool) -> tuple[float, TimedCollector | None]:
    null = NullSink()
    collector = TimedCollector() if status else None
    if collector is not None:
        s, c, a = collector.sinks()
        sinks = Sinks(scores=TeeSink(null, s), continuations=TeeSink(null, c),
                      alerts=TeeSink(null, a))
    else:
        sinks = Sinks(scores=TeeSink(null), continuations=TeeSink(null),
                      alerts=TeeSink(null))
    eng = Engine(cfg, sinks)
    t0 = time.process_time()
    for j in range(0, len(msgs), batch):
        eng.process(msgs[j : j + batch])
        if collector is not None:
            collector.batch(eng)
    return time.process_time() - t0, collector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--points", type=int, default=300)
    p.add_argument("--batch", type=int, default=1024, help="records per batch (1024)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(1)  # CPU time of one thread: steadier on a shared machine
    cfg = apply_overrides(PipelineConfig(), args.overrides)
    msgs = make_messages(args.keys, args.points, args.seed)
    n = len(msgs)
    run(msgs[: min(n, 4 * args.batch)], cfg, args.batch, True)  # warm-up (imports, torch)
    base, with_status, own = [], [], []
    collector = None
    for i in range(args.repeat):
        for status in (False, True) if i % 2 == 0 else (True, False):  # ABBA: drift cancels
            t, c = run(msgs, cfg, args.batch, status)
            if c is None:
                base.append(t)
            else:
                with_status.append(t)
                own.append(c.spent)
                collector = c
    # The sinks' add calls: rows through a TeeSink into the collector's list, timed alone.
    rows = [{"key": f"k{i % args.keys}", "ts_ms": i, "score": 0.5, "is_anomaly": False,
             "error": None} for i in range(n)]
    probe = StatusCollector()
    tee = TeeSink(NullSink(), probe.sinks()[0])
    bare = TeeSink(NullSink())
    t0 = time.perf_counter()
    for r in rows:
        bare.add(r)
    t_bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in rows:
        tee.add(r)
    t_add = time.perf_counter() - t0 - t_bare
    assert collector is not None
    t0 = time.perf_counter()
    for _ in range(20):
        json.dumps(collector.snapshot(), allow_nan=False)
    t_snap = (time.perf_counter() - t0) / 20
    print("  runs (s): alone " + " ".join(f"{x:.2f}" for x in base) + ", with the page "
          + " ".join(f"{x:.2f}" for x in with_status) + ", digest "
          + " ".join(f"{x:.3f}" for x in own))
    b, w = statistics.median(base), statistics.median(with_status)
    digest = statistics.median(own) / n * 1e6
    add = t_add / n * 1e6
    print(f"{n:,} records, {args.keys} keys, batches of {args.batch}, {args.repeat} repeats")
    print(f"  engine alone            {n / b:>9,.0f} records/s  ({b / n * 1e6:.2f} µs/record)")
    print(f"  engine + status page    {n / w:>9,.0f} records/s  ({w / n * 1e6:.2f} µs/record)"
          f"  difference {100 * (w - b) / b:+.1f}% (run-to-run noise included)")
    print(f"  collector, measured     {digest + add:.3f} µs/record: digest {digest:.3f} + "
          f"add {add:.3f} ({100 * (digest + add) / (b / n * 1e6):.2f}% of the engine's time)")
    print(f"  snapshot + JSON         {t_snap * 1e3:.2f} ms per request (HTTP thread)")


if __name__ == "__main__":
    main()
