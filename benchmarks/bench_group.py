"""Detection quality of a consumer group that merges its model against a single member.

Each quick-suite stream (``streamgen.bench.suite``) is scored twice through the engine:

* **single**: one engine takes every key, as one member owning every partition does;
* **split**: the keys are dealt to ``--members`` engines (key ``k`` to member ``k % M``, as
  partitions by key would), each learning alone (no merging);
* **group**: the same members, merging their models through a checkpoint store every
  ``--merge-every`` micro-batches of their own (:class:`streamgen.merge.GroupModel`;
  member 0 coordinates), as the service does at each checkpoint.

Reported per seed and overall: PR-AUC and ROC-AUC of ``score`` over every row (from each
key's first point on) against the point labels, and the group's merge count and version.
Streams with fewer keys than members are left out (a member would hold nothing).

Usage::

    python benchmarks/bench_group.py                    # 3 members, seeds 0 1 2
    python benchmarks/bench_group.py --members 2 --merge-every 2 --seeds 0
    python benchmarks/bench_group.py --set batch.max_records=128   # more merge rounds
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from typing import Any

import numpy as np

from streamgen.bench.suite import make_suite
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.evaluation.detection import average_precision, roc_auc
from streamgen.io.files import ListSink
from streamgen.io.store import CheckpointStore, LocalBackend
from streamgen.merge import GroupModel
from streamgen.records import Position


def _scores(rows: list[dict[str, Any]], n_members: int, seed: int, merge_every: int,
            store_dir: str | None, overrides: list[str]) -> tuple[np.ndarray, int]:
    """Score ``rows`` with ``n_members`` engines (merging when more than one); the score of
    each row in row order, and the group version reached."""
    cfg = apply_overrides(PipelineConfig(),
                          ["model.device=cpu", f"model.seed={seed}", *overrides])
    keys = sorted({r["key"] for r in rows})
    member_of = {k: i % n_members for i, k in enumerate(keys)}
    sinks = [ListSink() for _ in range(n_members)]
    engines = [Engine(cfg, Sinks(scores=s)) for s in sinks]
    store = CheckpointStore(LocalBackend(store_dir), "file") if store_dir else None
    groups = [GroupModel(store, f"m{i}") for i in range(n_members)] if store else []
    parts: list[list[tuple[int, RawMessage]]] = [[] for _ in range(n_members)]
    for i, r in enumerate(rows):
        parts[member_of[r["key"]]].append((i, RawMessage(json.dumps(r).encode(),
                                                         Position("bench", 0, i))))
    B = cfg.batch.max_records
    n_batches = max(-(-len(p) // B) for p in parts)
    started = [False] * n_members
    for b in range(n_batches):  # members advance in step, as on one clock
        for m in range(n_members):
            chunk = [msg for _, msg in parts[m][b * B : (b + 1) * B]]
            if chunk:
                engines[m].process(chunk)
            if groups and engines[m].learner is not None and not started[m]:
                groups[m].start(engines[m])
                started[m] = True
        if groups and (b + 1) % merge_every == 0:
            for m in (*range(1, n_members), 0):
                if started[m]:
                    groups[m].sync(engines[m], coordinator=(m == 0))
    out = np.zeros(len(rows))
    for m in range(n_members):
        idx = [i for i, _ in parts[m]]
        out[idx] = [float(r["score"] or 0.0) for r in sinks[m].rows]
    return out, (groups[0].version if groups else 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--merge-every", type=int, default=1, help="batches between merges")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="pipeline override for every engine (e.g. batch.max_records=128)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res: dict[str, dict[str, list[float]]] = {
        k: {"pr": [], "roc": []} for k in ("single", "split", "group")}
    versions = []
    for seed in args.seeds:
        per: dict[str, dict[str, list[float]]] = {k: {"pr": [], "roc": []} for k in res}
        for s in make_suite(quick=True, seed=seed):
            if s.values.shape[0] < args.members:
                continue
            labels = np.array([r["is_anomaly"] for r in s.rows])
            for name, n in (("single", 1), ("split", args.members), ("group", args.members)):
                with tempfile.TemporaryDirectory() as d:
                    sc, v = _scores(s.rows, n, seed, args.merge_every,
                                    d if name == "group" else None, args.set)
                per[name]["pr"].append(average_precision(sc, labels))
                per[name]["roc"].append(roc_auc(sc, labels))
                if name == "group":
                    versions.append(v)
        for name in res:
            for m in ("pr", "roc"):
                res[name][m].append(float(np.mean(per[name][m])))
        print(f"seed {seed}: " + " | ".join(
            f"{k} PR-AUC {res[k]['pr'][-1]:.3f} ROC {res[k]['roc'][-1]:.3f}" for k in res))

    def fmt(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.3f}"

    print(f"mean over {len(args.seeds)} seeds (mean of streams), {args.members} members, "
          f"merge every {args.merge_every} batches:")
    for k in res:
        print(f"  {k:6s} PR-AUC {fmt(res[k]['pr'])}  ROC-AUC {fmt(res[k]['roc'])}")
    print(f"  group versions reached per stream: median "
          f"{statistics.median(versions) if versions else 0}")
    if args.json:
        print(json.dumps({"args": vars(args), **res, "versions": versions}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
