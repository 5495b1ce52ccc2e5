"""DDP under torchrun: two gloo processes train, stay in sync, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_processes_write_one_checkpoint(history_csv, tmp_path):
    src = history_csv(n=80, bad_rows=False)
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("ddp_worker.py")), str(src), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ddp.json").read_text())
    assert info["world_size"] == 2 and len(set(info["gan"])) == 1  # ranks in sync
    ckpt = torch.load(tmp_path / "vae" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["config"]["kind"] == "vae"
    assert torch.load(tmp_path / "gan.pt", weights_only=True)["config"]["kind"] == "gan"
    scores = (tmp_path / "vae" / "scores.csv").read_text().splitlines()
    assert len(scores) == 1 + sum(1 for _ in open(src)) - 1  # header + one row per input row
    assert not list(tmp_path.rglob("*.tmp"))
