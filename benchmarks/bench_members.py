"""Records/s of a consumer group of 1, 2, 3 ... ``streamgen run`` processes on one machine.

For each group size ``M`` (``--members 1,2,3``): a fresh six-partition topic, ``M`` members of
one new group sharing a checkpoint folder (partition state and the merged group model, as in
production with ``checkpoint.merge_models`` on); once every member holds partitions, a backlog
of ``--records`` records over 100 keys is produced as fast as the broker takes it, and the
group's rate is measured from the start of the load to the last score row read back (start-up
and the group join excluded; the producer's time counts, as the members consume while it
produces). Per member: the rows it scored (by the partitions it held) and the CPU it used
over that span (``/proc``), so a machine too small for the
group shows as members with high CPU and a flat group rate.

On a 2-core machine three members and the load producer compete for two cores: the group
rate says how much the model merge and the extra consumers cost, not how a group of real
machines scales.

Usage::

    python benchmarks/bench_members.py                      # 1, 2, 3 members, 100,000 records
    python benchmarks/bench_members.py --members 1,3 --records 60000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `streamgen` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_e2e import (  # noqa: E402
    ScoreReader,
    produce,
    service_failure,
    start_service,
    stop_service,
)
from streamgen.localbroker import LocalBroker, create_topic  # noqa: E402

PARTITIONS = 6


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _assignment(log: Path) -> list[int]:
    """The partitions in a member's latest ``partitions assigned`` log line."""
    last: list[int] = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return last
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "partitions assigned":
            last = sorted(int(n.rsplit("-", 1)[1]) for n in rec["partitions"])
    return last


def bench_group(bootstrap: str, n_members: int, n: int, workdir: Path,
                overrides: list[str], timeout_s: float) -> dict[str, Any]:
    topic, scores = f"grp-in-{uuid.uuid4().hex[:8]}", f"grp-scores-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, PARTITIONS)
    create_topic(bootstrap, scores, PARTITIONS)
    group = f"bench-members-{uuid.uuid4().hex[:8]}"
    ckpt = workdir / "ckpt"
    dirs = [workdir / f"m{i}" for i in range(n_members)]
    procs = []
    for d in dirs:
        d.mkdir(parents=True)
        procs.append(start_service(bootstrap, topic, scores, d, overrides, group_id=group,
                                   checkpoint_dir=ckpt, log_level="info"))
    reader = ScoreReader(bootstrap, scores)
    reader.start()
    failure = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            held = [_assignment(d / "service.log") for d in dirs]
            if all(held) and sorted(p for h in held for p in h) == list(range(PARTITIONS)):
                break
            failure = next((f for p, d in zip(procs, dirs, strict=True)
                            if (f := service_failure(p, d))), None)
            if failure:
                break
            time.sleep(0.2)
        else:
            failure = "the members did not split the partitions within 180 s"
        held = [_assignment(d / "service.log") for d in dirs]
        cpu0 = [_cpu_seconds(p.pid) for p in procs]
        t0 = time.time()
        if failure is None:
            produce(bootstrap, topic, n)
            deadline = time.monotonic() + timeout_s
            while reader.count() < n and time.monotonic() < deadline:
                failure = next((f for p, d in zip(procs, dirs, strict=True)
                                if (f := service_failure(p, d))), None)
                if failure:
                    break
                time.sleep(0.1)
        cpu1 = [_cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            stop_service(p)
        reader.stop_event.set()
        reader.join(10)
    # From the start of the load to the last row: the first batch's scoring time counts.
    span = reader.arrivals[-1][0] - t0 if reader.arrivals else float("nan")
    by_partition: dict[int, int] = {}
    for part, _ in reader.seen:
        by_partition[part] = by_partition.get(part, 0) + 1
    members = []
    for i, h in enumerate(held):
        rows = sum(by_partition.get(p, 0) for p in h)
        members.append({"partitions": h, "rows": rows,
                        "rate": rows / span if span > 0 else float("nan"),
                        "cpu_s": round(cpu1[i] - cpu0[i], 1),
                        "cpu_share": round((cpu1[i] - cpu0[i]) / span, 2)
                        if span > 0 else float("nan")})
    return {"members": n_members, "records": n, "scored": reader.count(),
            "rate": reader.count() / span if span > 0 else float("nan"),
            "span_s": round(span, 2), "per_member": members, "failure": failure}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", help="existing broker (default: start a local Tansu)")
    p.add_argument("--members", default="1,2,3", help="group sizes to measure (1,2,3)")
    p.add_argument("--records", type=int, default=100_000, help="backlog per group size")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline override for every member (repeatable)")
    p.add_argument("--json", action="store_true", help="also print one line of JSON")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.members.split(",") if x.strip()]
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = LocalBroker().start()
        bootstrap = broker.bootstrap
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-members-") as tmp:
            for m in sizes:
                results.append(bench_group(bootstrap, m, args.records, Path(tmp) / f"g{m}",
                                           args.overrides, timeout_s=600))
    finally:
        if broker is not None:
            broker.close()
    print(f"{'members':>7}{'group rows/s':>14}{'span s':>8}   per member: rows/s, CPU share")
    for r in results:
        per = "  ".join(f"{m['rate']:.0f}/s cpu {m['cpu_share']:.2f}" for m in r["per_member"])
        print(f"{r['members']:>7}{r['rate']:>14.0f}{r['span_s']:>8.1f}   {per}")
        if r["failure"]:
            print(f"  failure: {r['failure']}", file=sys.stderr)
    print(f"cores: {os.cpu_count()}")
    if args.json:
        print(json.dumps({"benchmark": "members", "overrides": args.overrides,
                          "results": results}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
