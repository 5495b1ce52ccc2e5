"""Windows scored per second on a GPU (or the CPU), through the learner the engine uses.

Four measurements, all in one process, each timed after warm-up until ``--seconds`` pass:

1. **score**: :meth:`OnlineLearner.score` on ``(B, W, C)`` host windows, as the engine calls
   it: host→device copy, one forward pass, per-point scores and forecasts copied back. This
   is the number the issue's target (≥ 1M windows/s on one H100) is about.
2. **forward**: the model's forward passes alone (in the learner's ``score_chunk`` passes)
   on windows already on the device, the ceiling of (1).
3. **learn**: :meth:`OnlineLearner.learn` optimizer steps on ``train_batch`` spans
   (steps/s and training windows/s).
4. **engine**: the whole online loop (decode JSON, per-key windows, normalize, score,
   learn, calibrate, one row per record) over ``--keys`` keys, against River
   ``HalfSpaceTrees`` (per key, the benchmark suite's baseline) on the same records in the
   same run.

Each row names the model, architecture, precision and batch size. Prints a markdown table
and, with ``--json FILE``, writes every row.

Usage::

    python benchmarks/bench_gpu.py                          # device auto (CUDA if present)
    python benchmarks/bench_gpu.py --device cpu --batches 4096 --seconds 0.5
    python benchmarks/bench_gpu.py --json gpu.json --keys 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `streamgen` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamgen.config import PipelineConfig, apply_overrides  # noqa: E402
from streamgen.models.online import OnlineLearner  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn: Callable[[], Any], device: torch.device, seconds: float, warmup: int = 3) -> float:
    """Calls of ``fn`` per second (wall clock, device synchronized), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 4 == 0 or n < 4:
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= seconds:
                return n / dt


def _learner(model: str, arch: str, bf16: bool, device: str, window: int) -> OnlineLearner:
    cfg = apply_overrides(
        PipelineConfig(),
        [
            f"model.name={model}",
            f"model.arch={arch}",
            f"model.bf16={bf16}",
            f"model.device={device}",
        ],
    )
    return OnlineLearner(cfg.model, n_channels=1, window=window)


def _learner_rows(lr: OnlineLearner, name: dict[str, Any], batches: list[int],
                  seconds: float, rng: np.random.Generator) -> list[dict[str, Any]]:  # fmt: skip
    """Score and forward-only rates at each batch size, then the learning rate, of one learner."""
    rows: list[dict[str, Any]] = []
    dev, window, tag = lr.device, lr.window, "/".join(name.values())
    for b in batches:
        host = rng.standard_normal((b, window, 1)).astype(np.float32)
        on_dev = torch.from_numpy(host).to(dev)

        def fwd(x: torch.Tensor = on_dev) -> None:
            with lr._autocast():  # in the learner's passes: one pass of 262k RVAE windows
                for lo in range(0, len(x), lr.score_chunk):  # asked cuDNN for 163 GiB
                    lr.model.score(x[lo : lo + lr.score_chunk])

        score = _rate(lambda h=host: lr.score(h), dev, seconds)
        forward = _rate(fwd, dev, seconds)
        rows.append(name | {"what": "score", "batch": b, "windows_per_s": score * b,
                            "forward_windows_per_s": forward * b})  # fmt: skip
        print(f"  {tag} B={b:>7,}: score {score * b:>13,.0f} w/s, "
              f"forward {forward * b:>13,.0f} w/s", flush=True)  # fmt: skip
    n = lr.cfg.train_batch
    spans = rng.standard_normal((n, window + lr.cfg.horizon, 1)).astype(np.float32)
    steps = _rate(lambda s=spans: lr.learn(s), dev, seconds)
    rows.append(name | {"what": "learn", "batch": n, "steps_per_s": steps,
                        "windows_per_s": steps * n})  # fmt: skip
    print(f"  {tag} learn: {steps:,.0f} steps/s", flush=True)
    return rows


def model_rows(models: list[str], archs: list[str], precisions: list[str], batches: list[int],
               device: str, window: int, seconds: float) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for model in models:
        for arch in archs:
            for prec in precisions:
                lr = _learner(model, arch, prec == "bf16", device, window)
                if prec == "bf16" and lr.device.type != "cuda":
                    continue  # autocast is a CUDA option here
                name = {"model": model, "arch": arch, "precision": prec}
                rows += _learner_rows(lr, name, batches, seconds, rng)
                if lr.device.type == "cuda":
                    del lr
                    torch.cuda.empty_cache()
    return rows


def _messages(n_keys: int, points: int, seed: int = 0) -> list[Any]:
    from streamgen.core.ports import RawMessage
    from streamgen.records import Position

    rng = np.random.default_rng(seed)
    vals = np.sin(np.arange(points)[:, None] / 5.0 + np.arange(n_keys)[None, :])
    vals = vals + 0.1 * rng.standard_normal(vals.shape)
    msgs = []
    for p in range(points):
        for k in range(n_keys):
            body = f'{{"key":"k{k}","ts":{1000 + p},"x":{vals[p, k]:.5f}}}'.encode()
            msgs.append(RawMessage(body, Position("t", 0, len(msgs))))
    return msgs


def engine_rows(models: list[str], arch: str, device: str, n_keys: int, points: int,
                batch: int) -> list[dict[str, Any]]:  # fmt: skip
    from river import anomaly, compose, preprocessing

    from streamgen.core.engine import Engine, Sinks
    from streamgen.io.files import ListSink

    msgs = _messages(n_keys, points)
    rows: list[dict[str, Any]] = []
    for model in models:
        cfg = apply_overrides(PipelineConfig(), [
            f"model.name={model}", f"model.arch={arch}", f"model.device={device}",
            "window.length=32", f"window.max_keys={n_keys + 1}",
            f"batch.max_records={batch}"])  # fmt: skip
        sink = ListSink()
        eng = Engine(cfg, Sinks(scores=sink))
        eng.process(msgs[:batch])  # warm-up: first allocations, CUDA context, kernels
        t0 = time.perf_counter()
        for i in range(batch, len(msgs), batch):
            eng.process(msgs[i : i + batch])
        _sync(eng.learner.device)
        secs = time.perf_counter() - t0
        n = len(msgs) - batch
        rows.append({"what": "engine", "model": model, "arch": arch, "keys": n_keys,
                     "device": str(eng.learner.device), "records_per_s": n / secs,
                     "learn_steps": eng.learner.step})  # fmt: skip
        print(f"  engine {model}/{arch} on {eng.learner.device}: {n / secs:,.0f} records/s "
              f"({eng.learner.step} learn steps)", flush=True)  # fmt: skip
    # River HalfSpaceTrees per key, as in the benchmark suite: its cost is per point, and it
    # builds its trees lazily, so it gets long series (8 keys x 2,000 points) to amortize that.
    rng = np.random.default_rng(1)
    sample = np.sin(np.arange(2000)[:, None] / 5.0 + np.arange(8)[None, :])
    sample = sample + 0.1 * rng.standard_normal(sample.shape)
    hst = [compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=0))
           for _ in range(sample.shape[1])]  # fmt: skip
    t0 = time.perf_counter()
    for p in range(sample.shape[0]):
        for k in range(sample.shape[1]):
            x = {"x": float(sample[p, k])}
            hst[k].score_one(x)
            hst[k].learn_one(x)
    rate = sample.size / (time.perf_counter() - t0)
    rows.append({"what": "engine", "model": "river-hst", "arch": "-", "keys": sample.shape[1],
                 "device": "cpu", "records_per_s": rate})  # fmt: skip
    print(f"  River HalfSpaceTrees: {rate:,.0f} records/s", flush=True)
    return rows


def device_name(device: str) -> str:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))  # fmt: skip
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| what | model | arch | precision | batch / keys | windows/s (or records/s) | "
           "forward only |", "|---|---|---|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        size = r.get("batch", r.get("keys", ""))
        rate = r.get("windows_per_s", r.get("records_per_s", 0.0))
        fwd = r.get("forward_windows_per_s")
        extra = f"{fwd:,.0f}" if fwd else (f"{r['steps_per_s']:,.0f} steps/s"
                                           if "steps_per_s" in r else "")  # fmt: skip
        out.append(f"| {r['what']} | {r['model']} | {r['arch']} | {r.get('precision', '-')} | "
                   f"{size:,} | {rate:,.0f} | {extra} |")  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=["sota", "rvae"])
    ap.add_argument("--archs", nargs="+", default=["gru", "mlp"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--batches", type=int, nargs="+", default=[8192, 65536, 262144])
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--keys", type=int, default=10000, help="keys for the engine run (0: skip)")
    ap.add_argument("--points", type=int, default=48, help="points per key in the engine run")
    ap.add_argument("--engine-batch", type=int, default=32768)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    name = device_name(args.device)
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    rows = model_rows(args.models, args.archs, args.precisions, args.batches, args.device,
                      args.window, args.seconds)  # fmt: skip
    if args.keys:
        for arch in args.archs:
            rows += engine_rows(args.models, arch, args.device, args.keys, args.points,
                                args.engine_batch)  # fmt: skip
    print(f"\n{name}, torch {torch.__version__}, W={args.window}, C=1\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__,
                                         "rows": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
