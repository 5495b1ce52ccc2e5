"""Peak resident memory of the online loop at 1k, 10k and 100k keys (W = 32).

Each key gets ``W + H + 4`` points, so every key holds a full window, a full training span
and its normalizer/calibrator/alert state. Each key count runs in a fresh subprocess so the
peak RSS (``ru_maxrss``) belongs to that run alone; the baseline is the same process after
importing streamgen and building the engine with no keys.

Usage: ``python benchmarks/bench_memory.py [--keys 1000 10000 100000] [--model sota]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(n_keys: int, model: str) -> dict[str, float]:
    import numpy as np

    from streamgen.config import PipelineConfig, apply_overrides
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.records import Position

    cfg = apply_overrides(
        PipelineConfig(),
        [f"model.name={model}", "window.length=32", f"window.max_keys={n_keys + 1}",
         "batch.max_records=8192"],
    )
    eng = Engine(cfg, Sinks())
    eng.process([RawMessage(b'{"key": "warm", "ts": 1, "x": 0.0}', Position("t", 0, 0))])
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    points = 32 + cfg.model.horizon + 4
    rng = np.random.default_rng(0)
    off, t0, n = 1, time.perf_counter(), 0
    for p in range(points):
        batch = []
        for k in range(n_keys):
            v = float(np.sin(p / 5.0 + k) + 0.1 * rng.standard_normal())
            body = f'{{"key": "k{k}", "ts": {1000 + p}, "x": {v:.5f}}}'.encode()
            batch.append(RawMessage(body, Position("t", 0, off)))
            off += 1
            if len(batch) == 8192:
                eng.process(batch)
                n += len(batch)
                batch = []
        if batch:
            eng.process(batch)
            n += len(batch)
    secs = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert eng.store is not None and eng.store.n_keys == n_keys + 1
    return {
        "keys": n_keys, "records": n, "records_per_s": n / secs,
        "peak_rss_mb": peak_kb / 1024, "baseline_rss_mb": base_kb / 1024,
        "state_mb": (peak_kb - base_kb) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--model", default="sota")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.model)))
        return
    print("| keys | records | records/s | peak RSS (MB) | over baseline (MB) |")
    print("|---:|---:|---:|---:|---:|")
    for k in args.keys:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(k), "--model", args.model],
            capture_output=True, text=True,
        )
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {k:,} | {r['records']:,} | {r['records_per_s']:,.0f} | "
              f"{r['peak_rss_mb']:,.0f} | {r['state_mb']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
