"""Writes ``engine_v2.pt`` with the code of commit f63f32d (before the engine's
partition-state API): a full state after 256 records (the reorder gate holding some), a
partition file of the same engine, and the scores an uninterrupted engine gives the rest.

Run with that commit's package first on the path::

    mkdir /tmp/oldsg && git archive f63f32d streamgen | tar -x -C /tmp/oldsg
    PYTHONPATH=/tmp/oldsg .venv/bin/python tests/core/data/make_engine_v2.py \\
        tests/core/data/engine_v2.pt
"""

import json
import sys
import tempfile

SMALL = ["model.hidden=16", "model.latent=4", "window.length=16", "model.horizon=4",
         "model.warmup_steps=5", "calibrate.warmup_windows=10", "model.device=cpu",
         "window.late_policy=reorder", "window.allowed_lateness_ms=2000"]
HALF = 256


def main(out: str) -> None:
    from streamgen.bench.synthetic import make_stream
    from streamgen.config import PipelineConfig, apply_overrides
    from streamgen.core import checkpoint
    from streamgen.core.engine import Engine, Sinks
    from streamgen.core.ports import RawMessage
    from streamgen.io.files import ListSink
    from streamgen.records import Position
    from streamgen.service import PartitionCheckpoints

    cfg = apply_overrides(PipelineConfig(), SMALL)
    rows = make_stream(n_keys=2, n_points=300, seed=4)
    msgs = [RawMessage(json.dumps(r).encode(), Position("t", 0, i)) for i, r in enumerate(rows)]

    def run(engine: Engine, batch: list[RawMessage]) -> None:
        for i in range(0, len(batch), 128):
            engine.process(batch[i : i + 128])

    whole = ListSink()
    full = Engine(cfg, Sinks(scores=whole))
    run(full, msgs)
    full.flush_held()
    part_rows = ListSink()
    first = Engine(cfg, Sinks(scores=part_rows))
    run(first, msgs[:HALF])
    state = checkpoint.full_state(first)
    with tempfile.TemporaryDirectory() as tmp:
        pc = PartitionCheckpoints(tmp)
        pc.save_partition(first, ("t", 0), list(first.key_partition), first.offsets[("t", 0)])
        part = checkpoint.load(pc.partition_path(("t", 0)))
    expected = {r["offset"]: r["score"] for r in whole.rows}
    done = {r["offset"] for r in part_rows.rows}
    rest = sorted(o for o in expected if o not in done)
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "overrides": SMALL,
                            "full": state, "partition": part, "rest_offsets": rest,
                            "rest_scores": [expected[o] for o in rest]}, out)


if __name__ == "__main__":
    main(sys.argv[1])
