"""``streamgen score`` as a whole process against River HalfSpaceTrees, in one run.

The labelled one-channel streams of the quick benchmark suite (``streamgen.bench.suite``,
seed ``--seed``: spikes, level shifts, frequency changes, noise bursts, drift, flat lines,
seasonality and a 24-key stream; 58.8k rows over 52 keys) are written to one CSV file, keys
prefixed by their stream. Then, in this order:

1. ``streamgen score FILE -o OUT`` (a subprocess, default configuration plus ``--set``
   overrides, learning on) for each ``--configs`` entry: wall time of the whole process
   (start-up, reading, decoding, scoring, learning, writing), the same process on a 10-row
   file (start-up alone), and the rate with and without that start-up;
2. River ``HalfSpaceTrees`` (per key, on min-max scaled values, River's recommendation) in
   this process on the same rows: score then learn each point, as ``streamgen.bench.suite``
   runs it;

and the detection quality of each over every row (PR-AUC and ROC-AUC of the score against
the labels, the first row of every key on; HST's score and streamgen's ``score`` column).

Usage::

    python benchmarks/bench_score.py                                  # default configuration
    python benchmarks/bench_score.py --configs default,model.arch=gru --repeat 3
    python benchmarks/bench_score.py --json

A config entry is ``default`` or ``;``-separated ``--set`` overrides
(``model.arch=gru;window.length=32``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamgen.bench.suite import make_suite
from streamgen.evaluation.detection import average_precision, roc_auc


def write_suite_csv(path: Path, seed: int) -> tuple[list[str], np.ndarray]:
    """The one-channel quick-suite streams as one CSV (``key, ts, x0, is_anomaly``); returns
    the keys and labels in row order."""
    keys: list[str] = []
    labels: list[int] = []
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "timestamp", "x0", "is_anomaly"])
        for s in make_suite(quick=True, seed=seed):
            if s.values.shape[2] != 1:
                continue
            for r in s.rows:
                key = f"{s.name}/{r['key']}"
                w.writerow([key, r["ts"], r["x0"], r["is_anomaly"]])
                keys.append(key)
                labels.append(int(r["is_anomaly"]))
    return keys, np.array(labels)


def run_score(inp: Path, out: Path, overrides: list[str]) -> float:
    """Wall seconds of one ``streamgen score`` process."""
    cmd = [sys.executable, "-m", "streamgen", "score", str(inp), "-o", str(out), "--no-progress"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def run_hst(inp: Path, seed: int) -> tuple[np.ndarray, float]:
    """River HalfSpaceTrees per key over the file's rows; (scores, seconds)."""
    from river import anomaly, compose, preprocessing

    with inp.open() as f:
        rows = [(r["key"], float(r["x0"])) for r in csv.DictReader(f)]
    models: dict[str, Any] = {}
    out = np.zeros(len(rows))
    t0 = time.perf_counter()
    for i, (key, x) in enumerate(rows):
        m = models.get(key)
        if m is None:
            m = models[key] = compose.Pipeline(
                preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=seed)
            )
        feat = {"x0": x}
        out[i] = m.score_one(feat)
        m.learn_one(feat)
    return out, time.perf_counter() - t0


def read_scores(path: Path) -> np.ndarray:
    with path.open() as f:
        return np.array([float(r["score"] or 0.0) for r in csv.DictReader(f)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="default", help="comma-separated configs (see above)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per config (median reported)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        inp, small = d / "suite.csv", d / "small.csv"
        _, labels = write_suite_csv(inp, args.seed)
        with inp.open() as f:
            small.write_text("".join(f.readline() for _ in range(11)))
        n = len(labels)
        hst_scores, hst_secs = run_hst(inp, args.seed)
        hst_rate = n / hst_secs
        results["rows"] = n
        results["hst"] = {"points_per_s": hst_rate, "pr_auc": average_precision(hst_scores, labels),
                          "roc_auc": roc_auc(hst_scores, labels)}
        for name in args.configs.split(","):
            overrides = [] if name == "default" else [o for o in name.split(";") if o]
            out = d / "out.csv"
            whole = statistics.median(run_score(inp, out, overrides) for _ in range(args.repeat))
            start = statistics.median(
                run_score(small, d / "small-out.csv", overrides) for _ in range(args.repeat)
            )
            sc = read_scores(out)
            results[name] = {
                "whole_s": whole, "startup_s": start, "points_per_s": n / whole,
                # None when the start-up run took as long as the whole run (a busy machine).
                "points_per_s_after_startup": n / (whole - start) if whole > start + 0.1
                else None,
                "ratio_to_hst": n / whole / hst_rate,
                "pr_auc": average_precision(sc, labels), "roc_auc": roc_auc(sc, labels),
            }
    print(f"{n:,} rows, 52 keys; River HalfSpaceTrees in this process: {hst_rate:,.0f} points/s, "
          f"PR-AUC {results['hst']['pr_auc']:.3f}, ROC-AUC {results['hst']['roc_auc']:.3f}")
    print("| config | whole process s | start-up s (10 rows) | points/s | × HST | points/s "
          "after start-up | × HST | PR-AUC | ROC-AUC |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.configs.split(","):
        r = results[name]
        after = r["points_per_s_after_startup"]
        after_txt = "n/a | n/a" if after is None else f"{after:,.0f} | {after / hst_rate:.2f}"
        print(f"| {name} | {r['whole_s']:.1f} | {r['startup_s']:.2f} | {r['points_per_s']:,.0f} "
              f"| {r['ratio_to_hst']:.2f} | {after_txt} | {r['pr_auc']:.3f} | "
              f"{r['roc_auc']:.3f} |")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
