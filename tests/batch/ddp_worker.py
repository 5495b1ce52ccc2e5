"""Run by ``test_ddp.py`` under ``torchrun --standalone --nproc_per_node=2`` (gloo on CPU).

Backfills a tiny CSV with the VAE (DDP wrapper, rank-0-only outputs), trains a tiny GAN
(hand-averaged gradients), and checks that both ranks end with identical weights. Rank 0
writes ``ddp.json`` in the output folder; any rank exits non-zero on a mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from streamgen.batch.backfill import BackfillOptions, backfill
from streamgen.batch.checkpoint import default_model_args
from streamgen.batch.distributed import dist_from_env, finish
from streamgen.batch.sines import sine_data
from streamgen.batch.train import TrainConfig, train
from streamgen.config import build_config


def _checksums(model: torch.nn.Module) -> list[float]:
    with torch.no_grad():
        mine = torch.tensor([float(sum(p.double().sum() for p in model.parameters()))])
    every = [torch.zeros(1, dtype=mine.dtype) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    return [float(t) for t in every]


def main(csv_path: str, out_dir: str) -> int:
    torch.set_num_threads(1)
    ctx = dist_from_env()
    out = Path(out_dir)
    pipe = build_config({"window": {"length": 12}, "model": {"hidden": 8, "latent": 4}})
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, device="cpu")
    opts = BackfillOptions(model="vae", output_dir=out / "vae", epochs=2, n_synthetic=4, train=cfg)
    backfill(csv_path, pipe, opts)
    x = sine_data(64, seq_len=8, dim=2, seed=0)
    gan = train("gan", default_model_args("gan", 2, hidden=8, latent=4), x[:48], x[48:], cfg,
                checkpoint_path=out / "gan.pt", ctx=ctx)  # fmt: skip
    sums = _checksums(gan.model)
    if ctx.is_main:
        (out / "ddp.json").write_text(json.dumps({"world_size": ctx.world_size, "gan": sums}))
    finish()
    return 0 if max(sums) - min(sums) < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
