"""Backfill: train a GAN or VAE on recorded history, then score, impute and sample it.

Outputs in ``output_dir`` (rank 0 only under ``torchrun``):

* ``scores.csv`` — exactly one row per input row, in input order:
  ``row,key,timestamp,score,calibrated,threshold,is_anomaly,warm,error``. Every decodable
  row has a finite score (higher = more anomalous); a dead-lettered row keeps its place with
  an empty score and its reason in ``error``. ``timestamp`` is ISO-8601 UTC with ms.
* ``imputed.csv`` — every key on its time grid with gaps filled by conditional generation:
  ``key,timestamp,<channels>,imputed,row`` (``imputed`` 1 where any value was filled; ``row``
  the input row, empty for an inserted timestamp).
* ``synthetic.csv`` — sampled windows in raw units: ``window,key,step,<channels>`` (each
  window is de-normalized with the scale of a key drawn in proportion to its window count).
* ``report.json`` and ``report.png``; ``checkpoint.pt`` unless another path is given.
  ``report.json``'s ``training`` says why training stopped (``stop_reason``: ``epochs``,
  ``early_stopping``, ``max_seconds`` or ``interrupted``), its steps and seconds, and
  ``timings`` the seconds of each stage.

With progress on (the default), each stage and the training's progress are reported on
stderr: plain lines unless stderr is a terminal (see :mod:`streamgen.batch.train`).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamgen.batch import report as rpt
from streamgen.batch.checkpoint import load_checkpoint, pipeline_model_args
from streamgen.batch.dataset import KeyScaler, group_by_key, make_windows, split_by_time
from streamgen.batch.device import cpu_threads
from streamgen.batch.distributed import dist_from_env
from streamgen.batch.history import read_history
from streamgen.batch.kinds import DEFAULT_EPOCHS, sampling
from streamgen.batch.outputs import compute_scores, write_imputed, write_scores, write_synthetic
from streamgen.batch.quality import mmd_rbf, precision_recall_coverage
from streamgen.batch.train import TrainConfig, steps_per_epoch, train
from streamgen.config import PipelineConfig
from streamgen.core.jsonsafe import write_json
from streamgen.errors import ConfigError
from streamgen.models.online import resolve_device


@dataclass(frozen=True)
class BackfillOptions:
    """What the ``backfill`` command asks for (CLI values already merged with the pipeline)."""

    model: str
    output_dir: Path
    epochs: int | None = None  # None: DEFAULT_EPOCHS[model], or none further with checkpoint_in
    val_fraction: float = 0.2
    n_synthetic: int = 256
    max_gap_points: int = 64
    checkpoint_in: Path | None = None
    checkpoint_out: Path | None = None
    train: TrainConfig = TrainConfig()
    vae_sample: str = "residual"  # streamgen.batch.kinds.VAE_SAMPLE_MODES


class _Stages:
    """Seconds per backfill stage (for the report) and one stderr line per stage."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}
        self.t0 = self.last = time.monotonic()

    def done(self, stage: str, detail: str = "") -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self.last, 3)
        if self.enabled:
            print(f"backfill: {stage}{': ' + detail if detail else ''} "
                  f"({now - self.last:.1f} s; {now - self.t0:.0f} s in all)",
                  file=sys.stderr, flush=True)  # fmt: skip
        self.last = now


def backfill(input_path: str | Path, pipe: PipelineConfig, opts: BackfillOptions) -> dict:
    """Train (or load) the model, write every output, return the report dict (rank 0)."""
    device = opts.train.device
    threads = opts.train.cpu_threads if resolve_device(device).type == "cpu" else 0
    with cpu_threads(threads):
        return _backfill(input_path, pipe, opts)


def _backfill(input_path: str | Path, pipe: PipelineConfig, opts: BackfillOptions) -> dict:
    ctx = dist_from_env()
    stages = _Stages(opts.train.progress and ctx.is_main)
    hist = read_history(input_path, pipe.decode)
    series = group_by_key(hist.records)
    n_ch = len(hist.channels)
    stages.done("read", f"{len(hist.outcomes)} rows, {len(series)} keys")
    resume = load_checkpoint(opts.checkpoint_in) if opts.checkpoint_in else None
    length = pipe.window.length
    if resume is not None:
        if resume["config"]["kind"] != opts.model:
            raise ConfigError(
                f"--checkpoint-in: holds a {resume['config']['kind']} model, not {opts.model}"
            )
        if int(resume["model_args"]["n_channels"]) != n_ch:
            raise ConfigError(
                f"--checkpoint-in: model has {resume['model_args']['n_channels']} channels, "
                f"input has {n_ch}"
            )
        length = int(resume["config"]["data"].get("window_length", length))
    epochs = opts.epochs
    if epochs is None:
        epochs = int(resume["epoch"]) + 1 if resume is not None else DEFAULT_EPOCHS[opts.model]
    # A checkpoint given without --epochs trains no further: no step budget either.
    cfg = replace(opts.train, epochs=epochs,
                  min_steps=opts.train.min_steps if resume is None else 0)
    scaler = KeyScaler.fit(
        series, 1.0 - opts.val_fraction, pipe.normalize.min_std, pipe.normalize.clip
    )
    windows = make_windows(series, scaler, length, pipe.window.stride)
    tr, va = split_by_time(series, windows, opts.val_fraction)
    stages.done("windows", f"{len(tr)} training, {len(va)} validation")
    ckpt_out = opts.checkpoint_out or opts.output_dir / "checkpoint.pt"
    data_state = {"window_length": length, "channels": hist.channels, "scaler": scaler.state()}
    result = train(
        opts.model,
        pipeline_model_args(opts.model, n_ch, pipe),
        windows.x[tr],
        windows.x[va],
        cfg,
        checkpoint_path=ckpt_out,
        resume=resume,
        data_state=data_state,
        ctx=ctx,
    )
    stages.done("train", f"{result.stop_reason}, {result.steps} steps")
    if not ctx.is_main:
        return {}
    model, device = result.model, resolve_device(cfg.device, ctx.local_rank)
    out = opts.output_dir
    out.mkdir(parents=True, exist_ok=True)
    table = compute_scores(hist, series, scaler, model, length, device,
                           float(pipe.calibrate.threshold), 1.0 - opts.val_fraction)  # fmt: skip
    write_scores(out / "scores.csv", hist, table)
    stages.done("score", f"{table.summary['scored_rows']} rows -> scores.csv")
    imputed = write_imputed(out / "imputed.csv", hist, series, scaler, model, length, device,
                            opts.max_gap_points)  # fmt: skip
    stages.done("impute", f"{imputed['filled_points']} points filled -> imputed.csv")
    real, synth, copying = write_synthetic(out / "synthetic.csv", hist.channels, windows,
                                           scaler, model, length, opts.n_synthetic, cfg.seed,
                                           tr, opts.vae_sample, va)  # fmt: skip
    stages.done("sample", f"{len(synth)} windows -> synthetic.csv")
    per_rank = -(-len(tr) // ctx.world_size) if ctx.enabled else len(tr)
    summary: dict[str, Any] = {
        "model": opts.model,
        "input": str(input_path),
        "input_resolved": str(Path(input_path).resolve()),
        "channels": hist.channels,
        "rows": len(hist.outcomes),
        "records": len(hist.outcomes) - len(hist.dead),
        "dead_letters": dict(Counter(d.reason for d in hist.dead)),
        "keys": len(series),
        "window_length": length,
        "windows": {"train": int(len(tr)), "validation": int(len(va))},
        "training": {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "stop_reason": result.stop_reason,
            "steps": result.steps,
            "steps_per_epoch": steps_per_epoch(opts.model, per_rank, cfg),
            "batch_size": cfg.batch_size,
            "min_steps": cfg.min_steps,
            "seconds": round(result.seconds, 3),
            "max_seconds": cfg.max_seconds,
            "history": result.history,
            "checkpoint": str(ckpt_out),
        },
        "scores": table.summary,
        "imputation": imputed,
        # what `streamgen evaluate-generated --backfill DIR` reads back
        "synthetic": {"file": "synthetic.csv", "windows": int(len(synth)),
                      "window_length": length,
                      "sampling": sampling(opts.model, opts.vae_sample),
                      } | _quick_quality(real, synth) | copying,
    }
    busy = max(range(len(series)), key=lambda k: len(series[k]))
    rows = series[busy].rows
    labels = [getattr(hist.outcomes[int(r)], "label", None) for r in rows]
    rpt.write_png(out / "report.png", result.history, series[busy].ts_ms,
                  table.calibrated[rows], table.flagged[rows], table.threshold, real, synth,
                  f"streamgen backfill: {opts.model} on {Path(input_path).name}",
                  key=series[busy].key, n_keys=len(series),
                  labels=None if all(v is None for v in labels)
                  else np.array([bool(v) for v in labels]))  # fmt: skip
    stages.done("report")
    summary["timings"] = stages.seconds | {"total": round(time.monotonic() - stages.t0, 3)}
    write_json(out / "report.json", summary)
    return summary


def _quick_quality(real: np.ndarray, synth: np.ndarray) -> dict[str, float]:
    """Cheap fidelity/diversity numbers (``evaluate-generated`` runs the full set)."""
    if len(real) < 3 or len(synth) < 3:
        return {}
    return {"mmd2_rbf": mmd_rbf(real, synth)} | precision_recall_coverage(real, synth)
