"""Synthetic labelled multi-key sensor streams with injected anomalies.

Each key is a sum of seasonal components (random periods, amplitudes, phases) plus noise,
optionally correlated across channels, with anomalies injected at random places:

``spike``, ``level_shift``, ``frequency`` (period change), ``shape`` (sine → square-ish),
``noise_burst``, ``drift`` (a ramp), ``flatline`` (a stuck sensor). Labels mark every point of
an anomalous segment (1), as benchmark data sets do.

Examples
--------
>>> rows = make_stream(n_keys=2, n_points=50, seed=1)
>>> len(rows), sorted(rows[0])
(100, ['is_anomaly', 'key', 'ts', 'x0'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("spike", "level_shift", "frequency", "shape", "noise_burst", "drift", "flatline")


@dataclass(frozen=True)
class StreamSpec:
    n_keys: int = 4
    n_points: int = 2000
    n_channels: int = 1
    anomalies_per_key: int = 4
    kinds: Sequence[str] = KINDS
    start_s: int = 1_700_000_000
    step_s: int = 1
    noise: float = 0.1
    warmup_points: int = 300  # no anomaly before this point
    seed: int = 0


def _series(spec: StreamSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, C = spec.n_points, spec.n_channels
    t = np.arange(n, dtype=np.float64)
    periods = rng.uniform(12, 60, size=2)
    base = np.zeros(n)
    comps = []
    for p in periods:
        amp, ph = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        comps.append((amp, p, ph))
        base += amp * np.sin(2 * np.pi * t / p + ph)
    mix = rng.normal(size=C) * 0.5 + 1.0  # channels share the signal (correlated)
    level = rng.uniform(-5, 5, size=C)
    scale = rng.uniform(0.5, 3.0, size=C)
    x = (base[:, None] * mix[None, :] + rng.normal(scale=spec.noise, size=(n, C)))
    x = x * scale + level
    labels = np.zeros(n, dtype=np.int8)
    sd = x.std(0)
    slots = max(1, spec.anomalies_per_key)
    usable = n - spec.warmup_points
    if usable <= 40:
        return x, labels
    seg = usable // slots
    for a in range(slots):
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        lo = spec.warmup_points + a * seg
        length = 1 if kind == "spike" else int(rng.integers(10, max(11, min(60, seg // 3))))
        start = int(rng.integers(lo, max(lo + 1, lo + seg - length - 1)))
        end = min(n, start + length)
        sl = slice(start, end)
        if kind == "spike":
            x[sl] += rng.choice([-1, 1]) * rng.uniform(4, 8) * sd
        elif kind == "level_shift":
            x[sl] += rng.choice([-1, 1]) * rng.uniform(1.5, 3) * sd
        elif kind == "frequency":
            tt = t[sl]
            alt = sum(amp * np.sin(2 * np.pi * tt / (p / 3) + ph) for amp, p, ph in comps)
            x[sl] += ((alt - base[sl])[:, None] * mix[None, :]) * scale
        elif kind == "shape":
            sq = np.sign(base[sl]) * np.abs(base).max()
            x[sl] += ((sq - base[sl])[:, None] * mix[None, :]) * scale
        elif kind == "noise_burst":
            x[sl] += rng.normal(scale=1.5 * sd, size=(end - start, C))
        elif kind == "drift":
            x[sl] += np.linspace(0, rng.uniform(2, 4), end - start)[:, None] * sd
        elif kind == "flatline":
            x[sl] = x[start]
        labels[sl] = 1
    return x, labels


def make_stream(**kwargs: object) -> list[dict[str, object]]:
    """Rows ``{key, ts, x0.., is_anomaly}`` of all keys interleaved in event-time order."""
    spec = StreamSpec(**kwargs)  # type: ignore[arg-type]
    rng = np.random.default_rng(spec.seed)
    per_key = [_series(spec, rng) for _ in range(spec.n_keys)]
    rows: list[dict[str, object]] = []
    for i in range(spec.n_points):
        ts = spec.start_s + i * spec.step_s
        for k, (x, lab) in enumerate(per_key):
            row: dict[str, object] = {"key": f"sensor-{k}", "ts": ts}
            for c in range(spec.n_channels):
                row[f"x{c}"] = round(float(x[i, c]), 6)
            row["is_anomaly"] = int(lab[i])
            rows.append(row)
    return rows


def write_stream(path: str | Path, **kwargs: object) -> int:
    """Write a stream as CSV (``timestamp`` column) or JSONL (``ts`` field); returns rows."""
    import csv
    import json

    rows = make_stream(**kwargs)
    p = Path(path)
    if p.suffix == ".csv":
        with open(p, "w", newline="") as fh:
            cols = ["key", "timestamp"] + [c for c in rows[0] if c.startswith("x")]
            cols.append("is_anomaly")
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for r in rows:
                r = dict(r)
                r["timestamp"] = r.pop("ts")
                w.writerow(r)
    else:
        with open(p, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return len(rows)
