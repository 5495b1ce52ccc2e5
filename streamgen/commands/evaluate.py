"""``streamgen evaluate``: score a run of ``streamgen score`` against labels, honestly.

Reads the score output (CSV or JSONL, optionally ``.gz``), joins ground-truth labels on
(key, timestamp) or on timestamp alone (or takes the ``label`` column the scorer carried
through), and reports every metric of :mod:`streamgen.evaluation.detection` next to a
random-score baseline, for all scored rows and for warm rows only.  With ``--continuations``
and ``--actual`` it also scores forecasts against what arrived and against naive forecasts
(:mod:`streamgen.evaluation.forecast`), and, when the continuations carry a ``spread``, how
often the errors fall within one and two spreads.  ``--report DIR`` writes ``metrics.json``
and plots.

Rows are ranked by the ``calibrated`` column by default: the fused, per-key calibrated score
(``streamgen score`` writes the same values to ``score``; before the fused score, ``score``
held the model's raw error, which ranked worse in every model/architecture pair of the
synthetic benchmark).  ``--score-column raw_score`` ranks by the model's raw error.  A file
without calibrated values (another tool's output) falls back to ``score`` with a warning;
``metrics.json`` records the column used either way.

Input rules mirror the pipeline's decoder defaults: timestamps are ISO-8601 text (naive = UTC)
or epoch numbers (>= 1e11: milliseconds, else seconds), normalised to integer milliseconds; a
missing or empty key is ``"default"``; value channels of ``--actual`` are the continuation's
``channels`` names, else every numeric field other than ``key``, ``ts``, ``timestamp`` and
``is_anomaly`` in the first decodable row; rows the decoder would dead-letter are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from streamgen.core.decode import is_numeric as _is_numeric
from streamgen.core.decode import parse_time_ms
from streamgen.errors import ConfigError, DecodeError
from streamgen.evaluation.detection import average_precision, evaluate_detection, roc_auc
from streamgen.evaluation.forecast import (
    ActualSeries,
    Continuation,
    JoinedForecasts,
    forecast_metrics,
    join_continuations,
)
from streamgen.evaluation.summary import format_summary, headline
from streamgen.io.files import read_table

__all__ = ["evaluate", "parse_args", "print_table", "register", "run"]

_MAX_ABS_VALUE = 1e30  # the decoder dead-letters larger values
_DEFAULT_KEY = "default"
_RESERVED = {"key", "ts", "timestamp", "is_anomaly"}  # not value channels (decoder defaults)
#: The column ranked by default, and the fallback for files without it.
DEFAULT_SCORE_COLUMN = "calibrated"
RAW_SCORE_COLUMN = "score"
_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}


# --------------------------------------------------------------------------------------------
# parsing helpers
# --------------------------------------------------------------------------------------------


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _where(path: Path, row: int) -> str:
    return f"{path.name} row {row + 1}"


def _ts(value: object, path: Path, row: int) -> int:
    try:
        return parse_time_ms(value)
    except DecodeError:
        raise ConfigError(f"{_where(path, row)}: cannot parse timestamp {value!r}") from None


def _float(value: object, path: Path, row: int, column: str) -> float:
    """Empty/None/'nan' -> nan; other non-numbers are errors."""
    if _empty(value):
        return float("nan")
    if isinstance(value, bool):
        raise ConfigError(f"{_where(path, row)}: column {column!r} is not a number: {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(
            f"{_where(path, row)}: column {column!r} is not a number: {value!r}"
        ) from None


def _bool(value: object, path: Path, row: int, column: str) -> bool | None:
    """True/False from booleans, 0/1 numbers or text; None when empty."""
    if _empty(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number in (0.0, 1.0):
        return number == 1.0
    raise ConfigError(f"{_where(path, row)}: column {column!r} is not a boolean: {value!r}")


def _number_or_nan(value: object, limit: float = _MAX_ABS_VALUE) -> float:
    """A decodable channel value, else nan (the decoder would dead-letter the row)."""
    if isinstance(value, bool) or _empty(value):
        return float("nan")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) and abs(x) <= limit else float("nan")


def _read_table(path: Path, flag: str) -> tuple[list[str], list[dict[str, Any]], bool]:
    """Column names, rows (CSV: strings, JSONL: native values), and whether it is JSONL."""
    try:
        return read_table(path)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _pick(columns: Sequence[str], names: Sequence[str], flag: str, path: Path) -> str:
    for name in names:
        if name in columns:
            return name
    if not columns:
        raise ConfigError(f"{flag}: {path.name} is empty")
    wanted = " or ".join(repr(n) for n in names)
    raise ConfigError(f"{flag}: {path.name} has no {wanted} column (columns: {', '.join(columns)})")


def _key(value: object) -> str:
    """The decoder's key rule: missing or empty is ``"default"``."""
    return _DEFAULT_KEY if _empty(value) else str(value)


def _rows_by_key(keys: Sequence[str]) -> dict[str, NDArray[np.int64]]:
    """Row indices of each key, keys in order of first appearance (one pass)."""
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        rows.setdefault(k, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in rows.items()}


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


@dataclass
class ScoreRows:
    """Columns of the score output, in file order.

    ``score`` holds the ranked column, named by ``score_column`` (``calibrated`` by default);
    ``raw_score`` and ``calibrated`` hold the ``score`` and ``calibrated`` columns for the plots
    (the same array as ``score`` when that column is the ranked one, ``None`` when absent).
    ``has_ts`` is False for dead-lettered rows written without a timestamp; their ``ts_ms``
    is 0 and their score is nan.  ``label`` is the ground truth the scorer carried through.
    """

    key: list[str]
    ts_ms: NDArray[np.int64]
    has_ts: NDArray[np.bool_]
    score: NDArray[np.float64]
    score_column: str
    raw_score: NDArray[np.float64] | None
    threshold: NDArray[np.float64] | None
    calibrated: NDArray[np.float64] | None
    is_anomaly: NDArray[np.bool_] | None
    warm: NDArray[np.bool_] | None
    label: NDArray[np.bool_] | None
    warnings: list[str]
    has_label_column: bool = False  # the file has a ``label`` column (maybe all empty)


def _default_score_column(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], warnings: list[str]
) -> str:
    """``calibrated`` when the file has calibrated values, else ``score`` (with a warning).

    ``streamgen score`` always writes ``calibrated``; a file without it comes from another
    tool, and ranking its raw score beats refusing it, as long as the fallback is visible.
    """
    if DEFAULT_SCORE_COLUMN in columns and any(
        not _empty(r.get(DEFAULT_SCORE_COLUMN)) for r in rows
    ):
        return DEFAULT_SCORE_COLUMN
    if RAW_SCORE_COLUMN in columns:
        warnings.append(
            f"no {DEFAULT_SCORE_COLUMN!r} values: ranking the raw {RAW_SCORE_COLUMN!r} column "
            f"instead (give --score-column to choose)"
        )
        return RAW_SCORE_COLUMN
    return DEFAULT_SCORE_COLUMN  # _pick names the missing column


def read_scores(path: Path, score_column: str | None = None) -> ScoreRows:
    """Read the output of ``streamgen score``; its scores are empty for dead-lettered rows.

    ``score_column`` names the ranked column; ``None`` picks :data:`DEFAULT_SCORE_COLUMN`
    (falling back to ``score`` when the file has no calibrated values).  The ranked column
    must parse as numbers (an error names the cell); the other score columns feed only the
    plots, so their unparsable cells become nan with a warning.
    """
    columns, rows, _ = _read_table(path, "--scores")
    if not rows:
        raise ConfigError(f"--scores: {path.name} has no rows")
    warnings: list[str] = []
    ts_col = _pick(columns, ("ts_ms", "timestamp", "ts"), "--scores", path)
    if score_column is None:
        score_column = _default_score_column(columns, rows, warnings)
    score_col = _pick(columns, (score_column,), "--scores", path)
    has = set(columns)
    score = np.array([_float(r.get(score_col), path, i, score_col) for i, r in enumerate(rows)])
    has_ts = np.array([not _empty(r.get(ts_col)) for r in rows], dtype=np.bool_)
    missing = np.flatnonzero(~has_ts & np.isfinite(score))
    if missing.size:
        raise ConfigError(
            f"--scores: {_where(path, int(missing[0]))}: scored row without timestamp"
        )
    ts = np.array(
        [_ts(r.get(ts_col), path, i) if has_ts[i] else 0 for i, r in enumerate(rows)],
        dtype=np.int64,
    )

    def numbers(col: str) -> NDArray[np.float64] | None:
        """A plot-only column: unparsable cells become nan, with a warning (not an error)."""
        if col == score_col:
            return score  # already parsed, strictly
        if col not in has:
            return None
        out = np.array([_number_or_nan(r.get(col), limit=math.inf) for r in rows])
        bad = [i for i, r in enumerate(rows) if not _empty(r.get(col)) and np.isnan(out[i])]
        if bad:
            warnings.append(
                f"{len(bad)} unparsable {col!r} cells ignored (plots only), e.g. "
                f"{_where(path, bad[0])}: {rows[bad[0]].get(col)!r}"
            )
        return out

    def flags(col: str) -> NDArray[np.bool_] | None:
        if col not in has:
            return None
        return np.array([bool(_bool(r.get(col), path, i, col)) for i, r in enumerate(rows)])

    label = None
    if "label" in has and any(not _empty(r.get("label")) for r in rows):
        label = flags("label")
    return ScoreRows(
        key=[_key(r.get("key")) for r in rows],
        ts_ms=ts,
        has_ts=has_ts,
        score=score,
        score_column=score_col,
        raw_score=numbers(RAW_SCORE_COLUMN),
        threshold=numbers("threshold"),
        calibrated=numbers("calibrated"),
        is_anomaly=flags("is_anomaly"),
        warm=flags("warm"),
        label=label,
        warnings=warnings,
        has_label_column="label" in has,
    )


@dataclass
class LabelJoin:
    labels: NDArray[np.bool_]
    info: dict[str, Any]


def join_labels(path: Path | None, scores: ScoreRows) -> LabelJoin:
    """Label per score row from ``timestamp,is_anomaly[,key]``; unlisted rows are normal.

    Without ``path`` the ``label`` column of the scores is used.
    """
    if path is None:
        if scores.label is None and scores.has_label_column:
            raise ConfigError(
                "--labels is required: the scores' 'label' column is empty (the scored input "
                "had no values in decode.label_field, 'is_anomaly' by default)"
            )
        if scores.label is None:
            raise ConfigError("--labels is required: the scores have no 'label' column")
        return LabelJoin(
            scores.label.copy(),
            {"file": None, "join": "label column of --scores", "n_label_rows": len(scores.key)},
        )
    columns, rows, _ = _read_table(path, "--labels")
    ts_col = _pick(columns, ("timestamp", "ts", "ts_ms"), "--labels", path)
    lab_col = _pick(columns, ("is_anomaly", "label"), "--labels", path)
    by_key = "key" in columns
    table: dict[tuple[str, int], bool] = {}
    for i, r in enumerate(rows):
        value = _bool(r.get(lab_col), path, i, lab_col)
        if value is None:
            raise ConfigError(f"--labels: {_where(path, i)}: empty {lab_col!r}")
        k = (_key(r.get("key")) if by_key else "", _ts(r.get(ts_col), path, i))
        table[k] = table.get(k, False) or value
    ts_list = scores.ts_ms.tolist()
    lookup: list[tuple[str, int] | None] = [
        ((k if by_key else ""), t) if ok else None
        for k, t, ok in zip(scores.key, ts_list, scores.has_ts.tolist(), strict=True)
    ]
    found = [None if k is None else table.get(k) for k in lookup]
    used = {k for k in lookup if k is not None}
    info = {
        "file": str(path),
        "join": "key+timestamp" if by_key else "timestamp",
        "n_label_rows": len(rows),
        "n_label_positive": int(sum(table.values())),
        "n_score_rows_matched": int(sum(v is not None for v in found)),
        "n_positive_labels_unmatched": int(sum(v for k, v in table.items() if k not in used)),
    }
    return LabelJoin(np.array([bool(v) for v in found], dtype=np.bool_), info)


def read_actual(
    path: Path, channels: Sequence[str] | None = None
) -> tuple[dict[str, ActualSeries], dict[str, Any]]:
    """Actual input rows per key, and a summary (channels used, rows skipped)."""
    columns, rows, jsonl = _read_table(path, "--actual")
    if not rows:
        raise ConfigError(f"--actual: {path.name} has no rows")
    order = ("ts", "timestamp") if jsonl else ("timestamp", "ts")
    ts_col = _pick(columns, order, "--actual", path)
    ts_list: list[int | None] = []
    for r in rows:
        try:
            ts_list.append(parse_time_ms(r.get(ts_col)))
        except DecodeError:
            ts_list.append(None)
    if channels:
        names = list(channels)
        absent = [c for c in names if c not in columns]
        if absent:
            raise ConfigError(
                f"--actual: {path.name} lacks the forecast channels {', '.join(absent)}"
            )
    else:
        names = []
        for r, t in zip(rows, ts_list, strict=True):
            names = [k for k, v in r.items() if k not in _RESERVED and _is_numeric(v)]
            if t is not None and names:
                break
        if not names:
            raise ConfigError(f"--actual: {path.name} has no numeric value columns")
    values = np.array([[_number_or_nan(r.get(c)) for c in names] for r in rows])
    good = np.array([t is not None for t in ts_list]) & np.isfinite(values).all(axis=1)
    ts = np.array([t if t is not None else 0 for t in ts_list], dtype=np.int64)
    by_key = _rows_by_key([_key(r.get("key")) for r in rows])
    out = {}
    for k, idx in by_key.items():
        idx = idx[good[idx]]
        if idx.size:
            out[k] = ActualSeries.from_rows(ts[idx], values[idx])
    info = {
        "file": str(path),
        "channels": names,
        "n_rows": len(rows),
        "n_rows_skipped": int((~good).sum()),
    }
    return out, info


def read_continuations(path: Path) -> tuple[list[Continuation], list[str] | None]:
    """Continuation rows ``key, ts, horizon, forecast[, spread][, channels]``; JSON text in CSV
    cells.

    Returns the continuations and the channel names when the rows carry them.  A missing,
    null or empty ``spread`` means none; a malformed one (not a list, not the forecast's
    shape, negative or non-finite) is an error naming the row, like a malformed forecast: a
    spread check that quietly skipped the odd rows would report a coverage nobody measured.
    """
    columns, rows, _ = _read_table(path, "--continuations")
    ts_col = _pick(columns, ("ts_ms", "ts", "timestamp"), "--continuations", path)
    f_col = _pick(columns, ("forecast",), "--continuations", path)
    out: list[Continuation] = []
    names: list[str] | None = None
    for i, r in enumerate(rows):
        raw = r.get(f_col)
        chans = r.get("channels")
        spread = r.get("spread")
        try:
            raw = json.loads(raw) if isinstance(raw, str) else raw
            chans = json.loads(chans) if isinstance(chans, str) and chans.strip() else chans
            if isinstance(spread, str):
                spread = json.loads(spread) if spread.strip() else None
        except json.JSONDecodeError:
            raise ConfigError(f"--continuations: {_where(path, i)}: invalid JSON cell") from None
        if not isinstance(raw, list):
            raise ConfigError(f"--continuations: {_where(path, i)}: forecast is not a JSON list")
        if spread is not None and not isinstance(spread, list):
            raise ConfigError(f"--continuations: {_where(path, i)}: spread is not a JSON list")
        if names is None and isinstance(chans, list) and all(isinstance(c, str) for c in chans):
            names = chans
        try:
            cont = Continuation.make(_key(r.get("key")), _ts(r.get(ts_col), path, i), raw, spread)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--continuations: {_where(path, i)}: {exc}") from None
        horizon = r.get("horizon")
        if not _empty(horizon) and _float(horizon, path, i, "horizon") != cont.forecast.shape[0]:
            raise ConfigError(
                f"--continuations: {_where(path, i)}: horizon {horizon} but "
                f"{cont.forecast.shape[0]} forecast steps"
            )
        out.append(cont)
    return out, names


def _align_keys(keys: Iterable[str], actuals: Mapping[str, ActualSeries]) -> dict[str, str]:
    """Map keys to actual keys; an input holding a single key serves every key."""
    only = list(actuals)
    return {k: (only[0] if len(only) == 1 and k not in actuals else k) for k in keys}


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def _alert_threshold(scores: ScoreRows) -> float | None:
    """The pipeline's alert threshold on the ranked column's scale, if it has one.

    The ``threshold`` column is ``calibrate.threshold``: it applies to ``calibrated`` only (the
    raw score has no threshold), so it is reported, next to the oracle ``*_threshold``
    values, only when ``calibrated`` is ranked and the threshold is one value throughout.
    """
    if scores.threshold is None or scores.score_column != DEFAULT_SCORE_COLUMN:
        return None
    values = np.unique(scores.threshold[np.isfinite(scores.threshold) & np.isfinite(scores.score)])
    return float(values[0]) if values.size == 1 else None


def _detection(args: argparse.Namespace, scores: ScoreRows, join: LabelJoin) -> dict[str, Any]:
    by_key = _rows_by_key(scores.key)
    order = np.concatenate(list(by_key.values()))  # rows of a key together, input order kept
    g = np.repeat(np.arange(len(by_key)), [idx.size for idx in by_key.values()])
    s = scores.score[order]
    y = join.labels[order]
    ts = scores.ts_ms[order]
    det = None if scores.is_anomaly is None else scores.is_anomaly[order]
    common = {"vus_window": args.vus_window, "n_seeds": args.seeds}
    result: dict[str, Any] = {
        "warnings": scores.warnings,
        "scores_file": str(args.scores),
        "score_column": scores.score_column,
        "alert_threshold": _alert_threshold(scores),
        "labels": join.info,
        "all": evaluate_detection(s, y, det, ts, g, **common),
        "warm": None,
    }
    if scores.warm is not None:
        w = scores.warm[order]
        if w.any():
            result["warm"] = evaluate_detection(
                s[w], y[w], None if det is None else det[w], ts[w], g[w], **common
            )
    model = result["all"]["model"]
    result["summary"] = headline(
        s, y, det, ts, g, roc_auc=model["roc_auc"], pr_auc=model["pr_auc"]
    )
    per_key: dict[str, dict[str, Any]] = {}
    for k, idx in by_key.items():
        sk, yk = scores.score[idx], join.labels[idx]
        finite = np.isfinite(sk)
        if not finite.any():
            continue  # e.g. dead letters without a key
        per_key[k] = {
            "n_scored": int(finite.sum()),
            "n_positive": int(yk[finite].sum()),
            "roc_auc": roc_auc(sk, yk),
            "pr_auc": average_precision(sk, yk),
        }
    result["n_keys"] = len(per_key)
    result["per_key"] = per_key
    return result


def _series(
    scores: ScoreRows, labels: NDArray[np.bool_] | None, actuals: Mapping[str, ActualSeries] | None
) -> list[Any]:
    from streamgen.evaluation.report import KeySeries

    by_key = _rows_by_key(scores.key)
    mapping = _align_keys(by_key, actuals) if actuals else {}
    out = []
    for k, idx in by_key.items():
        sel = idx[scores.has_ts[idx]]
        if sel.size == 0:
            continue
        out.append(
            KeySeries(
                key=k,
                ts_ms=scores.ts_ms[sel],
                score=scores.score[sel],
                score_column=scores.score_column,
                raw_score=None if scores.raw_score is None else scores.raw_score[sel],
                threshold=None if scores.threshold is None else scores.threshold[sel],
                calibrated=None if scores.calibrated is None else scores.calibrated[sel],
                labels=None if labels is None else labels[sel],
                detections=None if scores.is_anomaly is None else scores.is_anomaly[sel],
                actual=actuals.get(mapping.get(k, k)) if actuals else None,
            )
        )
    return out


def _warm_forecasts(
    scores: ScoreRows | None,
    conts: Sequence[Continuation],
    aligned: Sequence[Continuation],
    actuals: Mapping[str, ActualSeries],
    joined: JoinedForecasts,
) -> dict[str, Any] | None:
    """Forecast metrics for continuations made at a row the scores mark as warm."""
    if scores is None or scores.warm is None:
        return None
    warm = {
        (k, t)
        for k, t, w in zip(scores.key, scores.ts_ms.tolist(), scores.warm.tolist(), strict=True)
        if w
    }
    picked = [a for c, a in zip(conts, aligned, strict=True) if (c.key, c.ts_ms) in warm]
    if not picked:
        return None
    return forecast_metrics(join_continuations(picked, actuals, joined.periods))


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by parsed arguments; raises ConfigError on bad input."""
    if args.labels is not None and args.scores is None:
        raise ConfigError("--labels needs --scores")
    if args.continuations is not None and args.actual is None:
        raise ConfigError("--continuations needs --actual (the input the scores came from)")
    if args.scores is None and args.continuations is None:
        raise ConfigError("nothing to evaluate: give --scores [--labels], or --continuations")
    if args.seeds < 2:
        raise ConfigError(f"--seeds must be >= 2, got {args.seeds}")
    if args.vus_window is not None and args.vus_window < 0:
        raise ConfigError(f"--vus-window must be >= 0, got {args.vus_window}")
    if args.period is not None and args.period < 1:
        raise ConfigError(f"--period must be >= 1, got {args.period}")

    result: dict[str, Any] = {"detection": None, "forecast": None}
    scores = join = None
    if args.scores is not None:
        scores = read_scores(args.scores, args.score_column)
        join = join_labels(args.labels, scores)
        result["detection"] = _detection(args, scores, join)
    conts, channels = (
        read_continuations(args.continuations) if args.continuations is not None else ([], None)
    )
    actuals = actual_info = None
    if args.actual is not None:
        actuals, actual_info = read_actual(args.actual, channels)
    joined: JoinedForecasts | None = None
    if args.continuations is not None and actuals is not None:
        mapping = _align_keys({c.key for c in conts}, actuals)
        aligned = [replace(c, key=mapping[c.key]) for c in conts]
        try:
            joined = join_continuations(aligned, actuals, args.period)
        except ValueError as exc:
            raise ConfigError(f"--continuations: {exc}") from None
        result["forecast"] = {"actual_input": actual_info, **forecast_metrics(joined)}
        result["forecast"]["warm"] = _warm_forecasts(scores, conts, aligned, actuals, joined)
    if args.report is not None:
        from streamgen.evaluation.report import write_report

        series = _series(scores, join.labels if join else None, actuals) if scores else []
        try:
            write_report(args.report, result, series, joined, actuals)
        except OSError as exc:
            raise ConfigError(f"--report: cannot write {args.report}: {exc}") from None
    return result


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e5 else f"{v:.4g}"
    return str(v)


def _ttd_twin(name: str, model: Mapping[str, Any]) -> bool:
    """``ttd_*_rows`` next to a finite ``ttd_*_seconds``: the same delay twice; print one."""
    if not (name.startswith("ttd_") and name.endswith("_rows")):
        return False
    twin = model.get(name.removesuffix("_rows") + "_seconds")
    return isinstance(twin, float) and math.isfinite(twin)


def _detection_table(title: str, block: Mapping[str, Any], out: TextIO) -> None:
    out.write(
        f"\n{title}: {block['n_scored']} scored rows ({block['n_excluded_nonfinite']} without "
        f"a finite score excluded), {block['n_positive']} labelled rows in "
        f"{block['n_segments']} segments, VUS L={block['vus_max_window']}\n"
    )
    out.write(f"  {'metric':<40} {'model':>10}   random ({block['random_seeds']} seeds)\n")
    for name, value in block["model"].items():
        if _ttd_twin(name, block["model"]):
            continue
        rnd = block["random"].get(name)
        rtxt = f"{_fmt(rnd['mean'])} ± {_fmt(rnd['std'])}" if rnd else ""
        out.write(f"  {name:<40} {_fmt(value):>10}   {rtxt}\n")


def _forecast_table(title: str, block: Mapping[str, Any], out: TextIO) -> None:
    out.write(
        f"\n{title}: {block['n_joined']} continuations joined "
        f"({block['n_unmatched_key']} with an unknown key), horizon {block['horizon']}, "
        f"{block['n_points']} points compared\n"
    )
    out.write(f"  {'method':<16} {'MAE':>10} {'RMSE':>10}\n")
    for name in ("model", "last_value", "seasonal_naive"):
        out.write(f"  {name:<16} {_fmt(block[name]['mae']):>10} {_fmt(block[name]['rmse']):>10}\n")
    out.write(
        f"  ratio model/best naive: MAE {_fmt(block['ratio_mae'])} "
        f"(vs {block['best_naive_mae']}), RMSE {_fmt(block['ratio_rmse'])} "
        f"(vs {block['best_naive_rmse']})\n"
    )
    sp = block.get("spread")
    if sp:
        _spread_lines(sp, out)


def _pct(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def _spread_lines(sp: Mapping[str, Any], out: TextIO) -> None:
    """Coverage next to its Gaussian nominal value, so over/under-confidence reads at a glance."""
    nominal = sp["nominal"]
    out.write(
        f"  spread ({sp['n_points']} points with one): |error| within 1 spread "
        f"{_pct(sp['coverage_1sd'])} (nominal {_pct(nominal['coverage_1sd'])}), within 2 "
        f"{_pct(sp['coverage_2sd'])} (nominal {_pct(nominal['coverage_2sd'])}); "
        f"RMSE / RMS spread {_fmt(sp['rmse_over_rms_spread'])} (nominal 1)\n"
    )


def print_table(result: Mapping[str, Any], out: TextIO, verbose: bool = False) -> None:
    """Readable view of :func:`evaluate`'s result: five summary lines, the forecast errors,
    and with ``verbose`` every metric (all of them are in ``metrics.json`` either way)."""
    det = result.get("detection")
    if det:
        col = det["score_column"]
        what = {
            DEFAULT_SCORE_COLUMN: "the fused per-key calibrated score the threshold applies to",
            RAW_SCORE_COLUMN: "the fused score, or another tool's score",
            "raw_score": "the model's raw error",
        }.get(col)
        out.write(f"ranked by column {col!r}" + (f" ({what})" if what else "") + "\n")
        lab = det["labels"]
        if lab["file"] is None:
            out.write("labels: the 'label' column of --scores\n")
        else:
            out.write(
                f"labels joined on {lab['join']}: {lab['n_score_rows_matched']} score rows "
                f"matched a label row; {lab['n_positive_labels_unmatched']} positive label rows "
                f"matched no score row\n"
            )
        h = det["summary"]
        out.write(f"\nsummary: {h['rows']} scored rows, {h['keys']} keys\n")
        format_summary(h, out)
        if verbose:
            _detection_table("all rows", det["all"], out)
            if det["warm"] is not None:
                _detection_table("warm rows only", det["warm"], out)
            out.write(
                "\n  f1_best*, f1_pa_* and *_threshold use the best threshold chosen on the "
                f"labels (optimistic; *_threshold on the {col!r} scale);\n  "
                "f1_point_adjusted_optimistic credits a whole segment for one flagged row; "
                "ttd_*_rows are left out where ttd_*_seconds say the same.\n"
            )
            if det.get("alert_threshold") is not None:
                out.write(
                    f"  the pipeline's alert threshold on this scale: "
                    f"{_fmt(det['alert_threshold'])}\n"
                )
    fc = result.get("forecast")
    if fc:
        _forecast_table("forecast", fc, out)
        if verbose and fc.get("warm"):
            _forecast_table("forecast made at warm rows only", fc["warm"], out)
    rep = result.get("report")
    if rep:
        out.write(f"\nreport: {rep['metrics']} (every metric)")
        if rep["plots"]:
            out.write(f" and {len(rep['plots'])} plots in {rep['dir']}")
        out.write("\n")
        if rep.get("keys_note"):
            out.write(f"  {rep['keys_note']}\n")
    if not verbose and det:
        out.write("every metric next to its random baseline: --verbose")
        out.write("\n" if rep else "; metrics.json and plots: --report DIR\n")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate anomaly scores against labels and forecasts against actuals",
        description=(
            "Evaluate `streamgen score` output against ground-truth labels (ROC/PR-AUC, best "
            "F1, PA%K, VUS, NAB, time to detect) next to a random-score baseline, and "
            "optionally forecasts against what arrived and naive forecasts."
        ),
    )
    p.add_argument("--scores", type=Path, metavar="OUT", help="CSV/JSONL written by `score`")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="LABELS",
        help=(
            "CSV timestamp,is_anomaly[,key]; joined on (key, timestamp) when key is present "
            "(default: the 'label' column of --scores)"
        ),
    )
    p.add_argument("--continuations", type=Path, metavar="FILE", help="continuation rows")
    p.add_argument(
        "--actual", type=Path, metavar="INPUT", help="the CSV/JSONL input the scores came from"
    )
    p.add_argument("--report", type=Path, metavar="DIR", help="write metrics.json and PNGs")
    p.add_argument("--json", action="store_true", help="print metrics as JSON to stdout")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="print every metric next to its random baseline, not only the summary")
    p.add_argument(
        "--score-column",
        default=None,  # None: calibrated, or score for a file without calibrated values
        metavar="COL",
        help=(
            f"column ranked as the anomaly score (default: {DEFAULT_SCORE_COLUMN}, the fused "
            "per-key calibrated score the threshold applies to; 'score' for a file without "
            "calibrated values). 'raw_score' ranks by the model's raw error"
        ),
    )
    p.add_argument(
        "--vus-window",
        type=int,
        metavar="L",
        help="VUS max buffer L (default: longest labelled segment, at most 256)",
    )
    p.add_argument("--seeds", type=int, default=10, help="random-baseline seeds (default: 10)")
    p.add_argument(
        "--period",
        type=int,
        metavar="M",
        help="season length for seasonal naive (default: estimated per key)",
    )
    p.set_defaults(func=run)
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``streamgen evaluate ARGV``'s arguments, defaults included (for callers such as the
    demo, which evaluate their own output with the command's code)."""
    parser = argparse.ArgumentParser(prog="streamgen")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["evaluate", *argv])


def run(args: argparse.Namespace) -> int:
    """Execute ``streamgen evaluate``; 0 on success, 2 on bad arguments or input."""
    try:
        result = evaluate(args)
    except ConfigError as exc:
        print(f"streamgen evaluate: error: {exc}", file=sys.stderr)
        return 2
    from streamgen.core.jsonsafe import dumps_strict

    for warning in (result.get("detection") or {}).get("warnings", []):
        print(f"streamgen evaluate: warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.write(dumps_strict(result) + "\n")
    else:
        print_table(result, sys.stdout, verbose=args.verbose)
    return 0
