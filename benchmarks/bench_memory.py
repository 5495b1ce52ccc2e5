"""Peak resident memory of the online loop at 1k, 10k and 100k keys (default window).

Each key gets ``W + H + 4`` points, round-robin, in micro-batches of ``--batch`` records, so
every key holds a full window, a full training span and its normalizer/calibrator/alert
state, and the last rounds score a window for every record of a batch. Each key count runs
in a fresh subprocess so the peak RSS (``ru_maxrss``) belongs to that run alone; the
baseline is the same process after importing streamgen and building the engine with no keys.
``state/key`` counts the bytes of the per-slot arrays (rings, normalizer, calibrator,
forecast state, per-key autoregression) per key, without the Python dicts that map keys to
slots.

Usage: ``python benchmarks/bench_memory.py [--keys 1000 10000 100000] [--model sota]
[--arch gru|mlp] [--batch 8192]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `streamgen` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _state_bytes(eng) -> int:  # noqa: ANN001 - an Engine
    arrays = [eng.store.data, eng.store.flags, eng.store.count, eng.store.head,
              eng.store.last_ts, eng.store.since_emit, eng.normalizer.mean, eng.normalizer.var,
              eng.normalizer.sd, eng.normalizer.count]
    arrays += [v for v in vars(eng.slots).values() if hasattr(v, "nbytes")]  # SlotState
    for cal in eng.fusion.cals.values():  # the detectors' calibrators (the model's included)
        arrays += [v for v in vars(cal).values() if hasattr(v, "nbytes")]
    if eng.shape is not None:  # the per-key shape statistics
        sh = eng.shape
        arrays += [sh.mean, sh.second, sh.inv, sh.ref, sh.weight, sh.age]
    if eng.ar is not None:  # the per-key autoregressions (model.ar_order)
        ar = eng.ar
        arrays += [ar.gram, ar.cross, ar.coefs, ar.yy, ar.weight, ar.sigma, ar.age]
    return sum(a.nbytes for a in arrays)


def _child(n_keys: int, model: str, arch: str, batch: int) -> dict[str, float]:
    import numpy as np

    from streamgen.config import PipelineConfig, apply_overrides
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.records import Position

    cfg = apply_overrides(
        PipelineConfig(),
        [f"model.name={model}", f"model.arch={arch}",
         f"window.max_keys={n_keys + 1}", f"batch.max_records={batch}"],
    )
    eng = Engine(cfg, Sinks())
    eng.process([RawMessage(b'{"key": "warm", "ts": 1, "x": 0.0}', Position("t", 0, 0))])
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    points = cfg.window.length + cfg.model.horizon + 4
    rng = np.random.default_rng(0)
    off, t0, c0, n = 1, time.perf_counter(), time.process_time(), 0
    msgs: list[RawMessage] = []
    for p in range(points):
        vals = np.sin(p / 5.0 + np.arange(n_keys)) + 0.1 * rng.standard_normal(n_keys)
        for k in range(n_keys):
            body = f'{{"key": "k{k}", "ts": {1000 + p}, "x": {vals[k]:.5f}}}'.encode()
            msgs.append(RawMessage(body, Position("t", 0, off)))
            off += 1
            if len(msgs) == batch:
                eng.process(msgs)
                n += len(msgs)
                msgs = []
    if msgs:
        eng.process(msgs)
        n += len(msgs)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert eng.store is not None and eng.store.n_keys == n_keys + 1
    return {
        "keys": n_keys, "records": n, "records_per_s": n / secs, "records_per_cpu_s": n / cpu,
        "peak_rss_mb": peak_kb / 1024, "baseline_rss_mb": base_kb / 1024,
        "state_mb": (peak_kb - base_kb) / 1024,
        "state_bytes_per_key": _state_bytes(eng) / (n_keys + 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--model", default="sota")
    ap.add_argument("--arch", default="mlp", choices=["gru", "mlp"])
    ap.add_argument("--batch", type=int, default=8192, help="records per micro-batch")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.model, args.arch, args.batch)))
        return
    print(f"model {args.model}, arch {args.arch}, batch {args.batch}")
    print("| keys | records | records/s (CPU s) | peak RSS (MB) | over baseline (MB) "
          "| state/key (B) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k in args.keys:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(k), "--model", args.model,
             "--arch", args.arch, "--batch", str(args.batch)],
            capture_output=True, text=True,
        )
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {k:,} | {r['records']:,} | {r['records_per_cpu_s']:,.0f} | "
              f"{r['peak_rss_mb']:,.0f} | {r['state_mb']:,.0f} | "
              f"{r['state_bytes_per_key']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
