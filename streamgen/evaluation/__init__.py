"""Honest evaluation of anomaly scores and forecasts (``streamgen evaluate``).

* :mod:`.detection`: ROC/PR-AUC, best F1, PA and PA%K, VUS, NAB, time to detect, random baseline;
* :mod:`.forecast`: continuations joined with actuals, MAE/RMSE against naive forecasts,
  coverage of the continuations' spread;
* :mod:`.report`: ``metrics.json`` and plots;
* :mod:`.command`: the ``evaluate`` subcommand (``register`` / ``run``).
"""

from __future__ import annotations

from streamgen.evaluation.detection import (
    average_precision,
    best_f1,
    best_f1_pa_k,
    best_f1_point_adjusted,
    detection_metrics,
    evaluate_detection,
    nab_score,
    pa_k_auc,
    random_baseline,
    range_auc,
    roc_auc,
    segments,
    time_to_detect,
    vus,
)
from streamgen.evaluation.forecast import (
    ActualSeries,
    Continuation,
    estimate_period,
    evaluate_forecasts,
    forecast_metrics,
    join_continuations,
    spread_metrics,
)

__all__ = [
    "ActualSeries",
    "Continuation",
    "average_precision",
    "best_f1",
    "best_f1_pa_k",
    "best_f1_point_adjusted",
    "detection_metrics",
    "estimate_period",
    "evaluate_detection",
    "evaluate_forecasts",
    "forecast_metrics",
    "join_continuations",
    "nab_score",
    "pa_k_auc",
    "random_baseline",
    "range_auc",
    "roc_auc",
    "segments",
    "spread_metrics",
    "time_to_detect",
    "vus",
]
