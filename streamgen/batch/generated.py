"""``evaluate-generated``: load or generate windows, then run :mod:`streamgen.batch.quality`.

Real windows come from TimeGAN's sines (``sines``), from a ``synthetic.csv``-shaped file
(``window,key,step,<channels>``), or from a history file cut into windows of ``--seq-len``
(stride 1, raw units). With ``--model``, the model is trained on 80 % of the real windows
(random split: windows of the sines set are independent draws), sampled as many times as
there are real windows, and the samples are compared with *all* real windows.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamgen.batch.checkpoint import default_model_args
from streamgen.batch.dataset import KeyScaler, group_by_key, make_windows
from streamgen.batch.history import read_history
from streamgen.batch.quality import evaluate_quality
from streamgen.batch.sines import sine_data
from streamgen.batch.train import TrainConfig, train
from streamgen.config import PipelineConfig
from streamgen.core.jsonsafe import write_json
from streamgen.errors import ConfigError


def read_windows_csv(path: str | Path) -> np.ndarray:
    """Windows ``(N, T, C)`` from a ``window,key,step,<channels>`` CSV."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c for c in reader.fieldnames or [] if c not in ("window", "key", "step")]
        rows: dict[str, list[tuple[int, list[float]]]] = {}
        try:
            for r in reader:
                rows.setdefault(r["window"], []).append(
                    (int(r["step"]), [float(r[c]) for c in cols])
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: bad synthetic window row ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: no windows")
    lengths = {len(v) for v in rows.values()}
    if len(lengths) != 1:
        raise ConfigError(f"{path}: windows have different lengths {sorted(lengths)}")
    return np.array([[v for _, v in sorted(w)] for w in rows.values()], dtype=np.float64)


def load_windows(spec: str, args: argparse.Namespace, pipe: PipelineConfig) -> np.ndarray:
    """Real/synthetic windows in raw units from ``sines`` or a file."""
    if spec == "sines":
        return sine_data(args.n, args.seq_len, seed=args.seed or 0).astype(np.float64)
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"input: file not found: {spec}")
    if p.suffix == ".csv":
        with open(p, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        if "window" in header and "step" in header:
            return read_windows_csv(p)
    series = group_by_key(read_history(p, pipe.decode).records)
    ident = KeyScaler.fit(series)
    ident.mean[:], ident.std[:], ident.clip = 0.0, 1.0, float("inf")
    x = make_windows(series, ident, args.seq_len).x.astype(np.float64)
    if len(x) < 4:
        raise ConfigError(f"input: fewer than 4 windows of {args.seq_len} rows in {spec}")
    return x


def generate(
    kind: str, real: np.ndarray, cfg: TrainConfig, model_args: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train ``kind`` on 80 % of ``real`` and draw ``len(real)`` windows in raw units."""
    import torch

    rng = np.random.default_rng(cfg.seed)
    mean, std = real.mean(axis=(0, 1)), np.maximum(real.std(axis=(0, 1)), 1e-8)
    z = ((real - mean) / std).astype(np.float32)
    idx = rng.permutation(len(z))
    cut = int(0.8 * len(z))
    t0 = time.monotonic()
    res = train(kind, model_args, z[idx[:cut]], z[idx[cut:]], cfg)
    seconds = time.monotonic() - t0
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    synth = res.model.sample(len(real), real.shape[1], generator=gen).double().cpu().numpy()
    info = {
        "model": kind,
        "model_args": model_args,
        "train_seconds": round(seconds, 1),
        "epochs_run": res.epochs_run,
        "best_epoch": res.best_epoch,
        "history": res.history,
    }
    return synth * std + mean, info


def evaluate_generated(
    args: argparse.Namespace, pipe: PipelineConfig, cfg: TrainConfig
) -> dict[str, Any]:
    """Everything ``evaluate-generated`` prints; also writes ``quality.json``/``pca.png``."""
    info: dict[str, Any] = {}
    if args.model is not None:
        real = load_windows(args.input, args, pipe)
        m = pipe.model
        model_args = default_model_args(
            args.model, real.shape[2], hidden=m.hidden, latent=m.latent, layers=m.layers
        )
        synth, info = generate(args.model, real, cfg, model_args)
    else:
        real = load_windows(args.real, args, pipe)
        synth = load_windows(args.synthetic, args, pipe)
    if real.shape[1:] != synth.shape[1:]:
        raise ConfigError(
            f"--synthetic: windows {synth.shape[1:]} do not match real {real.shape[1:]}"
        )
    out = args.output_dir
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_quality(
        real,
        synth,
        iterations=args.iterations,
        repeats=args.repeats,
        seed=cfg.seed,
        device=cfg.device,
        plot_path=None if out is None else out / "pca.png",
    )
    result = metrics | {"training": info} if info else metrics
    if out is not None:
        write_json(out / "quality.json", result)
    return result
