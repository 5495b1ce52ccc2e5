"""Generate the GutenTAG series of the real-data suite (``streamgen/data/real/gutentag_*.csv.gz``).

GutenTAG (``timeeval-gutentag`` on PyPI, MIT licence; Wenig, Schmidl, Papenbrock: *TimeEval: A
Benchmarking Toolkit for Time Series Anomaly Detection Algorithms*, VLDB 2022) pins an older
numpy than streamgen, so it runs in a venv of its own::

    python3 -m venv /tmp/gtvenv && /tmp/gtvenv/bin/pip install timeeval-gutentag
    /tmp/gtvenv/bin/python benchmarks/make_gutentag_series.py [--out streamgen/data/real]

Written with timeeval-gutentag 1.5.0. Each series is one ``timeseries`` entry of a GutenTAG
config dict, generated through its Python API (``GutenTAG.from_dict(config, seed=SEED)``).
The output files hold the columns ``timestamp,value-0[,value-1,...],is_anomaly`` with values
rounded to 6 decimals, gzip-compressed with a zero mtime so that a rerun gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path
from typing import Any

SEED = 8_147_253  # GutenTAG base seed; the series name is mixed in by GutenTAG itself
N = 5000

_NOISE = 0.05


def _ts(name: str, bos: list[dict[str, Any]], anomalies: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "length": N, "base-oscillations": bos, "anomalies": anomalies}


def _an(pos: int, length: int, kinds: list[dict[str, Any]], channel: int = 0) -> dict[str, Any]:
    return {"exact-position": pos, "length": length, "channel": channel, "kinds": kinds}


SPIKE_MAX = {"kind": "extremum", "min": False, "local": False}
SPIKE_LOCAL_MIN = {"kind": "extremum", "min": True, "local": True, "context_window": 50}

CONFIG: dict[str, Any] = {
    "timeseries": [
        _ts(
            "gt_ecg",
            [{"kind": "ecg", "frequency": 1.5, "amplitude": 1.0, "variance": _NOISE}],
            [
                _an(900, 200, [{"kind": "pattern"}]),
                _an(2200, 1, [SPIKE_MAX]),
                _an(3000, 300, [{"kind": "frequency", "frequency_factor": 1.6}]),
                _an(4200, 150, [{"kind": "amplitude", "amplitude_factor": 0.4}]),
            ],
        ),
        _ts(
            "gt_sine_level",
            [{"kind": "sine", "frequency": 2.0, "amplitude": 1.0, "variance": _NOISE}],
            [
                _an(1100, 250, [{"kind": "mean", "offset": 0.8}]),
                _an(
                    2600, 150, [{"kind": "pattern-shift", "shift_by": 15, "transition_window": 40}]
                ),
                _an(3900, 1, [SPIKE_LOCAL_MIN]),
            ],
        ),
        _ts(
            "gt_randomwalk",
            [{"kind": "random-walk", "amplitude": 4.0, "smoothing": 0.01, "variance": 0.02}],
            [
                _an(1400, 200, [{"kind": "platform", "value": 0.0}]),
                _an(2900, 1, [SPIKE_MAX]),
                _an(3600, 250, [{"kind": "variance", "variance": 0.3}]),
            ],
        ),
        _ts(
            "gt_cbf",
            [
                {
                    "kind": "cylinder-bell-funnel",
                    "amplitude": 1.0,
                    "avg-pattern-length": 60,
                    "variance-pattern-length": 0.2,
                    "variance-amplitude": 0.1,
                    "variance": _NOISE,
                }
            ],
            [
                _an(1200, 300, [{"kind": "pattern", "cbf_pattern_factor": 4.0}]),
                _an(3300, 120, [{"kind": "amplitude", "amplitude_factor": 2.5}]),
            ],
        ),
        _ts(
            "gt_sawtooth_trend",
            [
                {
                    "kind": "sawtooth",
                    "frequency": 1.0,
                    "amplitude": 1.0,
                    "width": 0.7,
                    "variance": _NOISE,
                }
            ],
            [
                _an(1500, 200, [{"kind": "pattern", "sawtooth_width": 0.1}]),
                _an(  # ends with the series: GutenTAG keeps the trend's end level afterwards
                    N - 450,
                    450,
                    [
                        {
                            "kind": "trend",
                            "oscillation": {"kind": "polynomial", "polynomial": [0, 0.004]},
                        }
                    ],
                ),
            ],
        ),
        _ts(
            "gt_square",
            [
                {
                    "kind": "square",
                    "frequency": 1.0,
                    "amplitude": 1.0,
                    "duty": 0.5,
                    "variance": _NOISE,
                }
            ],
            [
                _an(1000, 300, [{"kind": "pattern", "square_duty": 0.85}]),
                _an(2700, 200, [{"kind": "frequency", "frequency_factor": 2.0}]),
                _an(3900, 1, [SPIKE_MAX]),
            ],
        ),
        _ts(
            "gt_modejump_2ch",
            [
                {
                    "kind": "random-mode-jump",
                    "frequency": 40,
                    "channel-diff": 0.5,
                    "channel-offset": 1.0,
                    "random-seed": 42,
                    "variance": _NOISE,
                },
                {
                    "kind": "random-mode-jump",
                    "frequency": 40,
                    "channel-diff": 0.5,
                    "channel-offset": 1.0,
                    "random-seed": 42,
                    "variance": _NOISE,
                },
            ],
            [
                _an(2000, 375, [{"kind": "mode-correlation"}], channel=1),
                _an(3700, 130, [{"kind": "mode-correlation"}], channel=0),
            ],
        ),
        _ts(
            "gt_mixed_3ch",
            [
                {"kind": "sine", "frequency": 1.0, "amplitude": 1.0, "variance": _NOISE},
                {"kind": "ecg", "frequency": 2.0, "amplitude": 1.0, "variance": _NOISE},
                {"kind": "random-walk", "amplitude": 2.0, "smoothing": 0.02, "variance": 0.02},
            ],
            [
                _an(900, 200, [{"kind": "amplitude", "amplitude_factor": 2.0}], channel=0),
                _an(2500, 150, [{"kind": "pattern"}], channel=1),
                _an(3700, 250, [{"kind": "mean", "offset": 1.5}], channel=2),
            ],
        ),
        _ts(
            "gt_dirichlet_2ch",
            [
                {
                    "kind": "dirichlet",
                    "frequency": 1.0,
                    "amplitude": 1.0,
                    "periodicity": 5,
                    "variance": _NOISE,
                },
                {"kind": "cosine", "frequency": 1.0, "amplitude": 1.0, "variance": _NOISE},
            ],
            [
                _an(1300, 300, [{"kind": "variance", "variance": 0.4}], channel=0),
                _an(2800, 1, [SPIKE_LOCAL_MIN], channel=1),
                _an(3800, 200, [{"kind": "frequency", "frequency_factor": 0.5}], channel=1),
            ],
        ),
    ]
}


def _write(df: Any, path: Path) -> None:
    text = df.round(6).to_csv(index=True, float_format="%.6f", lineterminator="\n")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode())
    path.write_bytes(buf.getvalue())


def main() -> None:
    """Generate every series of :data:`CONFIG` and write it under ``--out``."""
    from gutenTAG import GutenTAG

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("streamgen/data/real"))
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    series = GutenTAG.from_dict(CONFIG, seed=SEED).generate(return_timeseries=True)
    for ts in series or []:
        df = ts.timeseries
        df["is_anomaly"] = df["is_anomaly"].astype(int)
        path = out / f"{ts.name}.csv.gz"
        _write(df, path)
        print(
            f"{path}: {len(df)} rows, {df.shape[1] - 1} channels, "
            f"{int(df['is_anomaly'].sum())} anomalous points, {path.stat().st_size} bytes"
        )


if __name__ == "__main__":
    main()
