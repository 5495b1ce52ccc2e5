"""Backfill throughput and detection quality: ``streamgen backfill`` as a user runs it.

Writes (or reuses) a labelled synthetic history of ``--keys`` keys × ``--points`` points
(:mod:`streamgen.bench.synthetic`, seeded anomalies of seven kinds, ``is_anomaly`` labels), runs
``streamgen backfill INPUT --model vae|gan --output-dir DIR`` as a subprocess with default
settings (plus ``--extra`` arguments), and reports per run: wall time, the stop reason and
steps from ``report.json``, the stage timings, and the detection quality of ``scores.csv``
against the labels (ROC-AUC and PR-AUC = average precision of the raw scores). With several
``--seeds`` (one history per seed) it prints the mean and the spread (min–max).

Usage::

    # the issue #12 target: 100,000 rows over 10 keys, default settings, 3 seeds
    .venv/bin/python benchmarks/bench_backfill.py --seeds 0 1 2
    # a quick look (10 keys x 1,000 points, one seed)
    .venv/bin/python benchmarks/bench_backfill.py --quick
    # quality of existing outputs (e.g. of another version of streamgen)
    .venv/bin/python benchmarks/bench_backfill.py --score-only DIR --input FILE

Results go to ``--work`` (default ``/tmp/bench_backfill``) and, as JSON, to ``--json``.
Timings on a shared machine are noisy: the load average at start and end is recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from streamgen.evaluation.detection import average_precision, roc_auc

ROOT = Path(__file__).resolve().parents[1]


def _or_none(value: float) -> float | None:
    """``None`` (JSON ``null``) for an undefined metric (one class only)."""
    return None if math.isnan(value) else value


def detection_quality(scores_csv: Path, input_csv: Path) -> dict[str, float | None]:
    """ROC-AUC / PR-AUC of ``scores.csv`` (raw and calibrated) against the input's labels."""
    with open(input_csv, newline="") as fh:
        labels = np.array([int(r["is_anomaly"]) for r in csv.DictReader(fh)])
    score = np.full(len(labels), np.nan)
    cal = np.full(len(labels), np.nan)
    with open(scores_csv, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["score"]:
                score[int(r["row"])] = float(r["score"])
                cal[int(r["row"])] = float(r["calibrated"])
    ok = np.isfinite(score)
    s, c, y = score[ok], cal[ok], labels[ok]
    return {
        "roc_auc": _or_none(roc_auc(s, y)),
        "pr_auc": _or_none(average_precision(s, y)),
        "roc_auc_calibrated": _or_none(roc_auc(c, y)),
        "pr_auc_calibrated": _or_none(average_precision(c, y)),
        "positives": int(y.sum()),
        "rows": int(ok.sum()),
    }


def make_history(path: Path, keys: int, points: int, seed: int) -> Path:
    if not path.exists():
        from streamgen.bench.synthetic import write_stream

        write_stream(path, n_keys=keys, n_points=points, seed=seed)
    return path


def run_backfill(model: str, src: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "streamgen", "backfill", str(src), "--model", model,
           "--output-dir", str(out), *extra]  # fmt: skip
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    res: dict = {"model": model, "input": str(src), "cmd": " ".join(cmd), "rc": proc.returncode,
                 "wall_s": round(wall, 1), "load_start": round(load0, 2),
                 "load_end": round(os.getloadavg()[0], 2)}  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("backfill:")]
    res["progress_lines"] = len(lines)
    if proc.returncode != 0:
        res["stderr_tail"] = proc.stderr[-2000:]
        return res
    rep = json.loads((out / "report.json").read_text())
    tr = rep["training"]
    res |= {k: tr.get(k) for k in ("stop_reason", "epochs_run", "steps", "steps_per_epoch",
                                   "seconds", "best_epoch")}  # fmt: skip
    res["timings"] = rep.get("timings")
    res["quality"] = detection_quality(out / "scores.csv", src)
    return res


def _summary(runs: list[dict]) -> dict:
    out: dict = {}
    for model in sorted({r["model"] for r in runs}):
        rs = [r for r in runs if r["model"] == model and r["rc"] == 0]
        if not rs:
            continue
        row: dict = {"runs": len(rs)}
        for name, get in (("wall_s", lambda r: r["wall_s"]),
                          ("roc_auc", lambda r: r["quality"]["roc_auc"]),
                          ("pr_auc", lambda r: r["quality"]["pr_auc"])):  # fmt: skip
            v = np.array([get(r) for r in rs], dtype=float)
            row[name] = {"mean": round(float(v.mean()), 4), "min": round(float(v.min()), 4),
                         "max": round(float(v.max()), 4)}  # fmt: skip
        row["stop_reasons"] = [r["stop_reason"] for r in rs]
        out[model] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["vae", "gan"], choices=["vae", "gan"])
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--points", type=int, default=10_000, help="points per key")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--quick", action="store_true", help="10 keys x 1,000 points")
    ap.add_argument("--input", type=Path, help="use this labelled CSV instead of generating")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_backfill"))
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="further backfill arguments (last on the line)")  # fmt: skip
    ap.add_argument("--score-only", type=Path, metavar="DIR",
                    help="only compute the quality of DIR/scores.csv against --input")  # fmt: skip
    a = ap.parse_args(argv)
    if a.score_only is not None:
        if a.input is None:
            ap.error("--score-only needs --input")
        print(json.dumps(detection_quality(a.score_only / "scores.csv", a.input), indent=2))
        return 0
    if a.quick:
        a.points = 1000
    a.work.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in a.seeds:
        name = f"history_{a.keys}x{a.points}_s{seed}.csv"
        src = a.input or make_history(a.work / name, a.keys, a.points, seed)
        for model in a.models:
            out = a.work / f"{model}_{src.stem}"
            r = run_backfill(model, src, out, a.extra) | {"seed": seed}
            runs.append(r)
            q = r.get("quality") or {}
            print(f"{model} seed {seed}: rc {r['rc']} wall {r['wall_s']} s "
                  f"stop {r.get('stop_reason')} steps {r.get('steps')} "
                  f"roc_auc {q.get('roc_auc')} pr_auc {q.get('pr_auc')} "
                  f"load {r['load_start']}->{r['load_end']}", flush=True)  # fmt: skip
            if r["rc"] != 0:
                print(r.get("stderr_tail", ""), file=sys.stderr)
        if a.input is not None:
            break
    summary = _summary(runs)
    print(json.dumps(summary, indent=2))
    if a.json is not None:
        a.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
