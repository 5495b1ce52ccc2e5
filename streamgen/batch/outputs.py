"""The three backfill tables: ``scores.csv``, ``imputed.csv`` and ``synthetic.csv``.

Column contracts are in :mod:`streamgen.batch.backfill`. Each writer returns its numbers for
the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamgen.batch.checkpoint import BatchModel
from streamgen.batch.dataset import KeyHistory, KeyScaler, WindowSet, train_cut
from streamgen.batch.history import History, PartialRow
from streamgen.batch.impute import build_grid, impute_points
from streamgen.batch.quality import closest_ratio
from streamgen.batch.scoring import robust_z, sanitize, score_points
from streamgen.core.engine import iso_ms
from streamgen.evaluation.detection import roc_auc
from streamgen.io.files import FileSink
from streamgen.models.vae import VAE
from streamgen.records import Record

SCORE_COLUMNS = [
    "row", "key", "timestamp", "score", "calibrated", "threshold", "is_anomaly", "warm", "error",
]  # fmt: skip


@dataclass
class ScoreTable:
    """Per input row: raw and calibrated score (NaN for dead letters), flag and warm."""

    score: np.ndarray
    calibrated: np.ndarray
    flagged: np.ndarray
    warm: np.ndarray
    threshold: float
    summary: dict[str, Any] = field(default_factory=dict)


def compute_scores(
    hist: History,
    series: list[KeyHistory],
    scaler: KeyScaler,
    model: BatchModel,
    length: int,
    device: torch.device,
    threshold: float,
    train_fraction: float,
) -> ScoreTable:
    """Score every decodable row and calibrate per key on its training span."""
    n = len(hist.outcomes)
    score, cal = np.full(n, np.nan), np.full(n, np.nan)
    warm = np.zeros(n, dtype=bool)
    replaced = 0
    for k, s in enumerate(series):
        raw, bad = sanitize(score_points(model, scaler.transform(k, s.values), length, device))
        replaced += bad
        score[s.rows] = raw
        cal[s.rows] = robust_z(raw, raw[: train_cut(len(s), train_fraction)])
        warm[s.rows] = np.arange(len(s)) >= length - 1
    ok = np.isfinite(score)
    flagged = ok & (np.nan_to_num(cal, nan=-np.inf) > threshold)
    summary: dict[str, Any] = {
        "scored_rows": int(ok.sum()),
        "error_rows": int((~ok).sum()),
        "threshold": threshold,
        "anomalies": int(flagged.sum()),
        "nonfinite_scores_replaced": replaced,
    }
    labels = np.array(
        [o.label if isinstance(o, Record) and o.label is not None else -1 for o in hist.outcomes]
    )
    has = ok & (labels >= 0)
    if has.any():
        lab, pred = labels[has], flagged[has]
        tp = int((pred & (lab == 1)).sum())
        binary = lab <= 1  # the ROC curve ranks labelled 0 against labelled 1
        auc = roc_auc(score[has][binary], lab[binary])
        summary["labels"] = {
            "labelled_rows": int(has.sum()),
            "positives": int((lab == 1).sum()),
            "roc_auc": None if math.isnan(auc) else auc,
            "precision": tp / max(int(pred.sum()), 1),
            "recall": tp / max(int((lab == 1).sum()), 1),
        }
    return ScoreTable(score, cal, flagged, warm, threshold, summary)


def write_scores(path: Path, hist: History, table: ScoreTable) -> None:
    """One row per input row, in input order; dead letters keep their place with a reason."""
    sink = FileSink(path, SCORE_COLUMNS)
    for i, o in enumerate(hist.outcomes):
        key, ts = hist.key_and_time(i)
        row: dict[str, object] = {
            "row": i,
            "key": key,
            "timestamp": None if ts is None else iso_ms(ts),
        }
        if np.isfinite(table.score[i]):
            row |= {
                "score": float(table.score[i]),
                "calibrated": float(table.calibrated[i]),
                "threshold": table.threshold,
                "is_anomaly": bool(table.flagged[i]),
                "warm": bool(table.warm[i]),
                "error": "",
            }
        else:
            row["error"] = o.reason if not isinstance(o, Record) else "not scored"
        sink.add(row)
    sink.flush()
    sink.close()


def write_imputed(
    path: Path,
    hist: History,
    series: list[KeyHistory],
    scaler: KeyScaler,
    model: BatchModel,
    length: int,
    device: torch.device,
    max_gap_points: int,
) -> dict[str, Any]:
    """Every key on its time grid, gaps and missing values filled by the model."""
    n_ch = len(hist.channels)
    partial: dict[str, list[PartialRow]] = {}
    for p in hist.partial.values():
        partial.setdefault(p.key, []).append(p)
    sink = FileSink(path, ["key", "timestamp", *hist.channels, "imputed", "row"])
    filled_points = inserted = long_gaps = 0
    for k, s in enumerate(series):
        parts = partial.get(s.key, [])
        grid = build_grid(
            s.key,
            np.concatenate([s.ts_ms, np.array([p.ts_ms for p in parts], dtype=np.int64)]),
            np.concatenate([s.values, np.array([p.values for p in parts]).reshape(-1, n_ch)]),
            np.concatenate([s.rows, np.array([p.row for p in parts], dtype=np.int64)]),
            max_gap_points,
        )
        z = (grid.values - scaler.mean[k]) / scaler.std[k]
        filled = scaler.inverse(k, impute_points(model, z, length, device))
        missing = ~np.isfinite(grid.values).all(axis=1)
        filled_points += int(missing.sum())
        inserted += int((grid.source_row < 0).sum())
        long_gaps += grid.long_gaps
        for i in range(len(grid.ts_ms)):
            row: dict[str, object] = {"key": s.key, "timestamp": iso_ms(int(grid.ts_ms[i]))}
            row |= {c: float(filled[i, j]) for j, c in enumerate(hist.channels)}
            src = int(grid.source_row[i])
            row |= {"imputed": int(missing[i]), "row": src if src >= 0 else None}
            sink.add(row)
    sink.flush()
    sink.close()
    known = {s.key for s in series}
    return {
        "filled_points": filled_points,
        "inserted_timestamps": inserted,
        "rows_with_missing_values": len(hist.partial),
        "gaps_too_long": long_gaps,
        "keys_without_history": sorted(set(partial) - known),
    }


def draw_windows(
    model: BatchModel,
    n: int,
    length: int,
    train_x: np.ndarray,
    vae_sample: str = "residual",
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` sampled windows ``(n, length, C)`` in the model's (normalized) units and, where
    each carries a training window's residual (the VAE's ``residual`` mode,
    :data:`~streamgen.batch.kinds.VAE_SAMPLE_MODES`), that window's index in ``train_x``
    (else None). Residual sampling needs training windows of ``length``; without them the
    VAE draws decoder means."""
    if not isinstance(model, VAE):
        return model.sample(n, length, generator=generator).double().cpu().numpy(), None
    if vae_sample == "residual" and len(train_x) and train_x.shape[1] == length:
        bank = model.residual_bank(torch.from_numpy(np.ascontiguousarray(train_x)))
        synth, source = model.sample_with_residuals(n, bank, generator=generator)
        return synth.double().cpu().numpy(), source.numpy()
    noise = vae_sample == "noise"
    return model.sample(n, length, noise=noise, generator=generator).double().cpu().numpy(), None


def write_synthetic(
    path: Path,
    channels: list[str],
    windows: WindowSet,
    scaler: KeyScaler,
    model: BatchModel,
    length: int,
    n: int,
    seed: int,
    train: np.ndarray | None = None,
    vae_sample: str = "residual",
    held_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Sample ``n`` windows, write them in raw units; return (real sample, synthetic, numbers
    for the report: with ``held_out`` window indices, the samples' closest ratio,
    :func:`~streamgen.batch.quality.closest_ratio`).

    ``train``: indices of the training windows in ``windows`` (all when None). A window that
    carries a training window's residual (:func:`draw_windows`) takes that window's key
    (its units and its kind of signal); other windows take a key at random, as many times
    as the key has windows."""
    gen = torch.Generator().manual_seed(seed)
    train = np.arange(len(windows.x)) if train is None else np.asarray(train)
    train_x = windows.x[train]  # a copy (fancy indexing): made once, used twice
    synth_z, source = draw_windows(model, n, length, train_x, vae_sample, gen)
    rng = np.random.default_rng(seed)
    key_of = windows.key_index
    if source is not None:
        pick = key_of[train][source]
    else:
        pick = rng.choice(key_of, size=n) if len(key_of) else np.zeros(n, dtype=np.int64)
    synth = np.array([scaler.inverse(int(pick[w]), synth_z[w]) for w in range(n)])
    synth = synth.reshape(n, length, len(channels))
    sink = FileSink(path, ["window", "key", "step", *channels])
    for w in range(n):
        for t in range(length):
            row: dict[str, object] = {"window": w, "key": scaler.keys[int(pick[w])], "step": t}
            row |= {c: float(synth[w, t, j]) for j, c in enumerate(channels)}
            sink.add(row)
    sink.flush()
    sink.close()
    real = np.zeros((0, length, synth.shape[2]))
    if len(key_of):
        idx = rng.choice(len(key_of), size=min(n, len(key_of)), replace=False)
        real = np.stack([scaler.inverse(int(key_of[i]), windows.x[i]) for i in idx])
    info: dict[str, float] = {}
    if held_out is not None and len(held_out) and len(train) and n and windows.x.shape[1] == length:
        pos = np.stack([key_of, windows.start], axis=1)
        info["closest_ratio"] = round(closest_ratio(
            synth_z, train_x, windows.x[held_out], pos[train], pos[held_out],
            max_n=500, seed=seed), 4)  # fmt: skip
    return real, synth, info
