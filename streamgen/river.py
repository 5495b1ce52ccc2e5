"""streamgen's online models as River anomaly detectors.

:class:`StreamgenDetector` is a ``river.anomaly.base.AnomalyDetector`` (``learn_one`` /
``score_one`` on dicts of numeric features) that runs streamgen's own
:class:`~streamgen.core.engine.Engine`, the code path of ``streamgen score``: every call is
one record of one series, folded into the series' sliding window, scored by the online model
and the per-key shape detector, calibrated, fused, and learned from. The score is the
engine's ``score`` column: tail-equivalent z units, higher = more anomalous, 0 while no
detector has evidence yet (a series' first ~100 points).

One instance is one series (one key); use one detector per series, as River's detectors are
used. (This module is named ``river`` inside the ``streamgen`` package; with absolute imports,
which Python 3 always uses, ``import river`` here and elsewhere still finds the River package:
only running this file as a script, which puts ``streamgen/`` itself on ``sys.path``, would
shadow it.)

Examples
--------
>>> from streamgen.river import StreamgenDetector
>>> det = StreamgenDetector(window=16, seed=0)
>>> for i in range(40):
...     x = {"temp": float(i % 7), "humidity": float(i % 5)}
...     s = det.score_one(x)
...     det.learn_one(x)
>>> det.n_points
40
>>> isinstance(det.score_one({"temp": 3.0, "humidity": 2.0}), float)
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from river.base import AnomalyDetector

if TYPE_CHECKING:
    import pandas as pd

    from streamgen.config import PipelineConfig
    from streamgen.core.engine import Engine
    from streamgen.io.files import ListSink

__all__ = ["StreamgenDetector"]

_LIMIT = 1e30  # the decoder dead-letters larger magnitudes (core/decode.py)


def _feature_order(name: Hashable) -> tuple[str, str]:
    """Channels in a fixed order whatever the order of the dict's keys (and whatever their
    types: River feature names are any hashable)."""
    return (type(name).__name__, str(name))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, complex)


class StreamgenDetector(AnomalyDetector):
    """A streamgen online model (SOTA autoencoder or RVAE) as a River anomaly detector.

    Each ``x`` is the next point of one series, a dict of numeric features; the detector keeps
    the series' sliding window and runs streamgen's engine on it (``streamgen score``'s code
    path), so ``score_one`` returns the engine's fused, per-key calibrated ``score``
    (tail-equivalent z units; 0 before any detector has evidence, about the first 100
    points; higher = more anomalous). River's ``metrics.ROCAUC`` assumes scores in [0, 1]:
    evaluate these with ``metrics.RollingROCAUC`` (scale-invariant) or pass
    ``probability=True`` for ``Φ(score)``.

    **Score-then-learn contract.** The engine scores a point and learns from it in one
    step, and a windowed model has to fold a point into the window to score it at all. So:

    * ``score_one(x)`` processes ``x`` (scores *and* learns it) and remembers the score;
    * ``learn_one`` right after a ``score_one`` is the learn of that scored point: a no-op
      (River's prequential loop, ``score_one(x)`` then ``learn_one(x)``, processes every point
      exactly once). It is a no-op whatever its ``x``: a preprocessing step in a
      ``compose.Pipeline`` (``StandardScaler``) learns between the two calls and hands the
      detector a slightly different ``x`` for the same point;
    * ``learn_one(x)`` not preceded by a ``score_one`` processes ``x`` and discards its score;
    * ``score_one`` again with an equal ``x`` before any ``learn_one`` returns the remembered
      score without processing the point twice (an anomaly filter scores twice);
    * so ``score_one`` alone is not pure: scoring a point appends it to the series and the
      model learns from it unless the engine flags it (flagged points are kept out of
      training, as in ``streamgen score``).

    **Features.** The channels are the numeric features of the first ``x`` (in a fixed order,
    whatever the dict's order); a feature missing later, or not a finite number, repeats its
    last value (0 before any); magnitudes beyond 1e30 are clipped to it; features that appear
    later are ignored (the model's channel count is fixed). Each call is the next point in
    time (the engine's event time is the call count, one second apart).

    **Cost.** One engine micro-batch per point, and one training step per point (a
    1,024-record micro-batch shares a step among 32 new windows): measured ~6 ms per point
    on the 2-core development machine under load, against ~90 µs for River's
    HalfSpaceTrees in the same run (README, "Inside River pipelines"). ``learn_many``
    (River's mini-batch API, which ``compose.Pipeline.learn_many`` calls) and ``score_many``
    (a streamgen extension: River's anomaly detectors have no mini-batch scoring) feed a
    pandas DataFrame through the engine in micro-batches of ``batch.max_records`` rows,
    ~130 µs per point with 256-row micro-batches at the same ROC-AUC; within a micro-batch
    each window is scored before the model learns from the batch, as in ``streamgen
    score``.

    The engine is built at the first point; as in ``streamgen score`` that sets torch's
    thread count to ``model.cpu_threads`` (1 by default) and seeds torch's global random
    generator with ``model.seed``, for the whole process.

    Parameters
    ----------
    model
        A model of the registry (``streamgen.models.registry.MODEL_NAMES``: ``"sota"``,
        ``"rvae"``; ``model.name``); None keeps the pipeline's.
    window
        Window length in points (``window.length``); None keeps the pipeline's (64 by
        default).
    seed
        ``model.seed``: weight initialisation and replay sampling (results are reproducible
        from it on one machine).
    pipeline
        A :class:`~streamgen.config.PipelineConfig`, or the path of a pipeline YAML file;
        None = default settings. Its ``decode`` section is replaced (the detector builds the
        records itself).
    overrides
        ``dotted.key=value`` strings applied last, as ``--set`` does
        (``("calibrate.detectors=[model]",)``). (None rather than an empty tuple by default:
        River 0.26's ``_is_stochastic`` fails on an empty tuple parameter.)
    probability
        Return ``Φ(score)``, the standard normal CDF of the score, in [0, 1] (for River
        metrics that assume probabilities, like ``metrics.ROCAUC``), instead of the score.

    Examples
    --------
    >>> from river import compose, preprocessing
    >>> det = compose.Pipeline(preprocessing.StandardScaler(), StreamgenDetector(window=16))
    >>> for i in range(30):
    ...     x = {"v": float(i % 4)}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> det["StreamgenDetector"].n_points
    30
    """

    def __init__(
        self,
        model: str | None = None,
        window: int | None = None,
        seed: int = 0,
        pipeline: PipelineConfig | str | None = None,
        overrides: Sequence[str] | None = None,
        probability: bool = False,
    ) -> None:
        self.model = model
        self.window = window
        self.seed = seed
        self.pipeline = pipeline
        self.overrides = overrides
        self.probability = probability
        self.config = self._config()  # fails fast (ConfigError) on a bad setting
        self.channels: list[Hashable] | None = None
        self.n_points = 0
        self._engine: Engine | None = None
        self._sink: ListSink | None = None
        self._last: list[float] = []
        self._pending: tuple[dict[Hashable, Any], float] | None = None

    # -- configuration -----------------------------------------------------------------------
    def _config(self) -> PipelineConfig:
        from streamgen.config import PipelineConfig, apply_overrides, load_pipeline

        p = self.pipeline
        if p is None:
            base = PipelineConfig()
        elif isinstance(p, PipelineConfig):
            base = p
        elif isinstance(p, str | Path):
            base = load_pipeline(p)
        else:
            raise TypeError(f"pipeline: a PipelineConfig or a YAML path, not {type(p).__name__}")
        sets = [f"model.seed={self.seed}"]
        if self.model is not None:
            sets.append(f"model.name={self.model}")
        if self.window is not None:
            sets.append(f"window.length={self.window}")
        return apply_overrides(base, [*sets, *(self.overrides or ())])

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"window": 16}

    # -- the engine ----------------------------------------------------------------------------
    def _build(self, x: Mapping[Hashable, Any]) -> bool:
        """Fix the channels from the first ``x`` with a numeric feature; build the engine."""
        chans = sorted((k for k, v in x.items() if _is_number(v)), key=_feature_order)
        if not chans:
            return False
        from streamgen.core.engine import Engine, Sinks
        from streamgen.io.files import ListSink

        cfg = self.config
        # The records are built here: channel c is field "c<c>", time is "ts", no key, no label.
        decode = cfg.decode.model_copy(update={
            "key_field": "key", "time_field": "ts", "label_field": None,
            "value_fields": [f"c{i}" for i in range(len(chans))],
            "max_channels": max(cfg.decode.max_channels, len(chans)),
        })
        self.config = cfg.model_copy(update={"decode": decode})
        self.channels = chans
        self._last = [0.0] * len(chans)
        self._sink = ListSink()
        self._engine = Engine(self.config, Sinks(scores=self._sink))
        return True

    def _encode(self, x: Mapping[Hashable, Any]) -> bytes:
        assert self.channels is not None
        last = self._last
        rec: dict[str, Any] = {"ts": self.n_points}
        for i, name in enumerate(self.channels):
            v = x.get(name)
            if _is_number(v):
                f = float(v)  # type: ignore[arg-type]
                if math.isnan(f):
                    f = last[i]
                elif not -_LIMIT <= f <= _LIMIT:
                    f = math.copysign(_LIMIT, f)
                last[i] = f
            rec[f"c{i}"] = last[i]
        self.n_points += 1
        return json.dumps(rec).encode()

    def _process(self, xs: Sequence[Mapping[Hashable, Any]]) -> list[float]:
        """Run points through the engine (micro-batches of ``batch.max_records``); their
        scores (0.0 where the engine gave none)."""
        from streamgen.core.ports import RawMessage
        from streamgen.records import Position

        out: list[float] = []
        if self._engine is None:
            skip = 0
            while skip < len(xs) and not self._build(xs[skip]):
                skip += 1
            out = [0.0] * skip  # no numeric feature yet: no point, no score
            xs = xs[skip:]
            if not xs:
                return out
        assert self._engine is not None and self._sink is not None
        B = self.config.batch.max_records
        rows = self._sink.rows
        for i in range(0, len(xs), B):
            start = self.n_points
            msgs = [
                RawMessage(self._encode(x), Position("river", 0, start + j))
                for j, x in enumerate(xs[i : i + B])
            ]
            self._engine.process(msgs)
            out.extend(self._value(r.get("score")) for r in rows)
            rows.clear()
        return out

    def _value(self, score: Any) -> float:
        s = 0.0 if score is None else float(score)
        if self.probability:
            return 0.5 * math.erfc(-s / math.sqrt(2.0))
        return s

    # -- River's API -------------------------------------------------------------------------
    def learn_one(self, x: dict[Hashable, Any]) -> None:
        """Learn ``x``: a no-op right after ``score_one`` (that call processed the point),
        else process ``x`` (score it and learn from it) and discard its score."""
        if self._pending is not None:
            self._pending = None
            return
        self._process([x])

    def score_one(self, x: dict[Hashable, Any]) -> float:
        """Process ``x`` (the next point of the series) and return its score; the next
        ``learn_one`` is then a no-op (see the class docstring)."""
        if self._pending is not None and self._pending[0] == x:
            return self._pending[1]
        score = self._process([x])[0]
        self._pending = (dict(x), score)
        return score

    def learn_many(self, X: pd.DataFrame) -> None:
        """Process the rows of ``X`` (one point each, in order) in micro-batches; their
        scores are discarded. A pending ``score_one`` is forgotten (its point was processed)."""
        self._pending = None
        self._process(X.to_dict("records"))

    def score_many(self, X: pd.DataFrame) -> pd.Series:
        """Score the rows of ``X`` (one point each, in order) in micro-batches, learning
        from them as ``score_one`` does; a Series of scores with ``X``'s index.

        Each micro-batch (``batch.max_records`` rows, 1,024 by default) is scored by the
        state before it, as in ``streamgen score``: the first one of a fresh detector scores
        0 throughout (nothing learned yet); a smaller ``batch.max_records`` gives evidence
        sooner at some speed. Not part of River's ``AnomalyDetector`` API (River has no
        mini-batch scoring for anomaly detectors): call it directly, not through
        ``compose.Pipeline``."""
        import pandas as pd

        self._pending = None
        return pd.Series(self._process(X.to_dict("records")), index=X.index, dtype=float)
