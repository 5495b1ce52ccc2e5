"""Start-up time of the CLI (issue #12, target 4): wall time of whole processes.

Measures, as a user runs them (a fresh process each time, median of ``--runs``):

* ``streamgen --help`` (target < 0.5 s): imports no subcommand module, so no torch;
* ``streamgen score IN.csv -o OUT.csv`` on a generated 10-row CSV file (target < 3 s): the
  floor is importing torch.

Run::

    .venv/bin/python benchmarks/bench_startup.py            # 7 runs each
    .venv/bin/python benchmarks/bench_startup.py --runs 15 --json startup.json

The machine's load shows in wall times: on a shared machine take more runs and look at the
CPU (user + system) medians too. ``--exe`` picks the
entry point (default: the ``streamgen`` script next to this interpreter, else
``python -m streamgen``). To see what a start imports: ``python -X importtime -m streamgen
--help 2>&1 | sort -t'|' -k2 -n | tail``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"help": 0.5, "score_10_rows": 3.0}


def default_exe() -> list[str]:
    script = Path(sys.executable).with_name("streamgen")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "streamgen"]


def write_rows(path: Path, n: int = 10) -> None:
    lines = ["key,ts,value,is_anomaly"]
    lines += [f"sensor-0,{1_700_000_000 + i},{0.5 + i % 3},0" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_command(cmd: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` runs of ``cmd`` (each must exit 0).
    On a busy machine the CPU figure moves less than the wall time."""
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = _children_cpu(), time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall.append(time.perf_counter() - t0)
        cpu.append(_children_cpu() - c0)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stderr}")
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="runs per command (7); the median counts")
    ap.add_argument("--exe", nargs="+", default=None, help="entry point (default: streamgen)")
    ap.add_argument("--json", metavar="OUT", help="write the figures here too")
    args = ap.parse_args(argv)
    exe = args.exe or default_exe()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in10.csv", Path(tmp) / "out.csv"
        write_rows(src)
        cases = {
            "help": exe + ["--help"],
            "score_10_rows": exe + ["score", str(src), "-o", str(out)],
        }
        result = {}
        for name, cmd in cases.items():
            times, cpu = time_command(cmd, args.runs)
            med, med_cpu = statistics.median(times), statistics.median(cpu)
            result[name] = {
                "median_s": round(med, 3), "min_s": round(min(times), 3),
                "max_s": round(max(times), 3), "median_cpu_s": round(med_cpu, 3),
                "runs": args.runs, "target_s": TARGETS[name], "met": med < TARGETS[name],
            }
            print(f"{name:<14} wall median {med:.3f}s (min {min(times):.3f}, max "
                  f"{max(times):.3f}), cpu median {med_cpu:.3f}s, n={args.runs}; target < "
                  f"{TARGETS[name]}s wall: {'met' if med < TARGETS[name] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
