"""Detection and forecasting benchmark: sota/rvae (through the engine) vs River HalfSpaceTrees,
rolling z-score and |Δx| on a varied labelled synthetic suite.

Usage::

    python benchmarks/bench_detection.py                 # full: 9 streams, 3 seeds
    python benchmarks/bench_detection.py --quick         # smoke run, < 3 min
    python benchmarks/bench_detection.py --json out.json --set model.lr=1e-3
    python benchmarks/bench_detection.py --seeds 5 --seed 10 --markdown table.md
    python benchmarks/bench_detection.py --set model.arch=mlp   # the MLP architecture

Same as ``streamgen bench``; the logic lives in :mod:`streamgen.bench.suite`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `streamgen` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamgen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
