"""``evaluate-generated``: load or generate windows, then run :mod:`streamgen.batch.quality`.

Real windows come from TimeGAN's sines (``sines``), from a ``synthetic.csv``-shaped file
(``window,key,step,<channels>``), or from a history file cut into windows of ``--seq-len``
(stride 1, raw units). With ``--model``, the model is trained on 80 % of the real windows
(random split: windows of the sines set are independent draws), sampled as many times as
there are real windows, and the samples are compared with *all* real windows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamgen.batch.checkpoint import pipeline_model_args
from streamgen.batch.dataset import KeyScaler, group_by_key, make_windows
from streamgen.batch.history import read_history
from streamgen.batch.kinds import sampling
from streamgen.batch.quality import evaluate_quality
from streamgen.batch.sines import sine_data
from streamgen.batch.train import TrainConfig, train
from streamgen.config import PipelineConfig
from streamgen.core.jsonsafe import write_json
from streamgen.errors import ConfigError
from streamgen.io.files import read_table

#: Window length of real data cut from a history or drawn from ``sines`` when nothing says
#: otherwise (TimeGAN's 24).
DEFAULT_SEQ_LEN = 24


def read_windows_csv(path: str | Path) -> np.ndarray:
    """Windows ``(N, T, C)`` from a ``window,key,step,<channels>`` CSV."""
    columns, table, _ = read_table(path)
    cols = [c for c in columns if c not in ("window", "key", "step")]
    rows: dict[str, list[tuple[int, list[float]]]] = {}
    try:
        for r in table:
            rows.setdefault(r["window"], []).append((int(r["step"]), [float(r[c]) for c in cols]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: bad synthetic window row ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: no windows")
    lengths = {len(v) for v in rows.values()}
    if len(lengths) != 1:
        raise ConfigError(f"{path}: windows have different lengths {sorted(lengths)}")
    return np.array([[v for _, v in sorted(w)] for w in rows.values()], dtype=np.float64)


def _is_windows_file(spec: str) -> bool:
    p = Path(spec)
    if spec == "sines" or not p.is_file() or p.suffix != ".csv":
        return False
    with open(p, encoding="utf-8-sig") as fh:
        header = fh.readline().strip().split(",")
    return "window" in header and "step" in header


def from_backfill(args: argparse.Namespace) -> None:
    """Fill ``--synthetic``, ``--real`` and ``--seq-len`` from a backfill output folder.

    ``report.json`` names the history backfill read (``input_resolved``, else ``input``) and
    the windows' length; given flags win.
    """
    folder = Path(args.backfill)
    report = folder / "report.json"
    try:
        info = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--backfill: cannot read {report} ({exc}); is {folder} a "
                          "`streamgen backfill --output-dir`?") from None  # fmt: skip
    synth = info.get("synthetic") or {}
    if args.synthetic is None:
        args.synthetic = str(folder / synth.get("file", "synthetic.csv"))
    if args.real is None:
        for name in ("input_resolved", "input"):
            if info.get(name) and Path(info[name]).is_file():
                args.real = info[name]
                break
        else:
            raise ConfigError(f"--backfill: the history {info.get('input')!r} named in {report} "
                              "is not there; give it with --real FILE")  # fmt: skip
    if args.seq_len is None:
        args.seq_len = int(synth.get("window_length") or info["window_length"])


def load_windows(spec: str, args: argparse.Namespace, pipe: PipelineConfig) -> np.ndarray:
    """Real/synthetic windows in raw units from ``sines`` or a file."""
    seq_len = args.seq_len or DEFAULT_SEQ_LEN
    if spec == "sines":
        return sine_data(args.n, seq_len, seed=args.seed or 0).astype(np.float64)
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"input: file not found: {spec}")
    if _is_windows_file(spec):
        return read_windows_csv(p)
    series = group_by_key(read_history(p, pipe.decode).records)
    ident = KeyScaler.fit(series)
    ident.mean[:], ident.std[:], ident.clip = 0.0, 1.0, float("inf")
    x = make_windows(series, ident, seq_len).x.astype(np.float64)
    if len(x) < 4:
        raise ConfigError(f"input: fewer than 4 windows of {seq_len} rows in {spec}")
    return x


def train_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the 80 % of ``n`` windows a model is trained on, and of the rest."""
    idx = np.random.default_rng(seed).permutation(n)
    cut = int(0.8 * n)
    return idx[:cut], idx[cut:]


def generate(
    kind: str,
    real: np.ndarray,
    cfg: TrainConfig,
    model_args: dict[str, Any],
    vae_sample: str = "residual",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train ``kind`` on 80 % of ``real`` and draw ``len(real)`` windows in raw units
    (the VAE's as ``vae_sample`` says: :data:`~streamgen.batch.kinds.VAE_SAMPLE_MODES`)."""
    import torch

    from streamgen.batch.outputs import draw_windows

    mean, std = real.mean(axis=(0, 1)), np.maximum(real.std(axis=(0, 1)), 1e-8)
    z = ((real - mean) / std).astype(np.float32)
    tr, va = train_split(len(z), cfg.seed)
    t0 = time.monotonic()
    res = train(kind, model_args, z[tr], z[va], cfg)
    seconds = time.monotonic() - t0
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    synth, _ = draw_windows(res.model, len(real), real.shape[1], z[tr], vae_sample, gen)
    info = {
        "model": kind,
        "sampling": sampling(kind, vae_sample),
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
        model_args = pipeline_model_args(args.model, real.shape[2], pipe)
        synth, info = generate(args.model, real, cfg, model_args, args.vae_sample)
    else:
        synth = load_windows(args.synthetic, args, pipe)
        if args.seq_len is None:  # cut the real history into windows of the synthetic length
            args.seq_len = synth.shape[1]
        real = load_windows(args.real, args, pipe)
    if real.shape[1:] != synth.shape[1:]:
        (ts, cs), (tr, cr) = synth.shape[1:], real.shape[1:]
        fix = ""
        if args.real == "sines" and cs != cr:
            fix = ("; 'sines' is TimeGAN's 5-channel data set, not what backfill trained on: "
                   "compare with that history (--backfill DIR, or --real HISTORY)")
        elif ts != tr and not _is_windows_file(args.real or ""):
            fix = f"; give --seq-len {ts} to cut the real data into windows of {ts} steps"
        raise ConfigError(
            f"--synthetic: windows of {ts} steps x {cs} channels do not match the real ones, "
            f"{tr} steps x {cr} channels{fix}"
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
        long_iterations=args.long_judge,
    )
    result = metrics | {"training": info} if info else metrics
    if out is not None:
        write_json(out / "quality.json", result)
    return result


#: What each number means, printed next to it (see :mod:`streamgen.batch.quality`).
_MEANINGS = [
    ("discriminative_score", "|accuracy - 0.5| of a GRU telling real from synthetic on held-out "
     "windows: 0 = indistinguishable, 0.5 = always told apart"),
    ("discriminative_score_timegan", "the same with TimeGAN's weaker judge (1 layer, C/2 units), "
     "comparable with the paper"),
    ("discriminative_score_long", "the stronger judge trained --long-judge iterations: what a "
     "patient classifier still finds (compare with real data judged the same way)"),
    ("predictive_score", "MAE of one-step-ahead prediction on real windows by a GRU trained on "
     "synthetic ones (train on synthetic, test on real): lower is better"),
    ("predictive_score_real", "the same GRU trained on real windows: the reference; "
     "predictive_score near it = as useful as real data"),
    ("mmd2_rbf", "squared maximum mean discrepancy (RBF kernel): 0 = same distribution"),
    ("precision", "share of synthetic windows inside the real ones' k-NN manifold (fidelity), "
     "1 = best"),
    ("recall", "share of real windows inside the synthetic ones' manifold (diversity), 1 = best"),
    ("coverage", "share of real windows with a synthetic one among their k nearest, 1 = best"),
]  # fmt: skip


def format_quality(metrics: dict[str, Any]) -> str:
    """The metrics as a short table, one sentence per number on what it means."""
    lines = [f"{metrics['n_real']} real vs {metrics['n_synthetic']} synthetic windows"]
    for name, meaning in _MEANINGS:
        v = metrics.get(name)
        if v is None:
            continue
        sd = metrics.get(f"{name}_std")
        value = f"{v:.4f}" + (f" ± {sd:.4f}" if sd else "")
        lines.append(f"  {name:<29} {value:<17} {meaning}")
    training = metrics.get("training")
    if training:
        how = training.get("sampling", "generator")
        how = "its generator" if how == "generator" else f"--vae-sample {how}"
        lines.append(f"  trained {training['model']} for {training['epochs_run']} epochs in "
                     f"{training['train_seconds']} s; sampled with {how}")  # fmt: skip
    return "\n".join(lines) + "\n"
