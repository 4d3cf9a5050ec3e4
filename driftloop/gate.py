"""The champion/challenger gate: may a freshly trained model replace the one serving?

Retraining is triggered automatically, so the decision to deploy must be conservative
and explainable: the challenger replaces the champion only when it is strictly better on
the chosen metric, on the same recent holdout, by at least `min_improvement`. Anything
doubtful (a missing or non-finite metric, on either side) keeps the champion. With no
champion at all (a fresh endpoint) a valid challenger is deployed.

Pure: the retraining workflow reads the evaluation and calls `decide`; the `Decision`
travels in the state document and into the model registry, so every run is explained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from driftloop.errors import DriftloopError

# Metrics where a smaller value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "log_loss", "logloss", "brier", "mape"})


def higher_is_better(metric: str) -> bool:
    """The direction of a metric by name (error metrics are lower-is-better)."""
    return metric.lower() not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and the numbers behind it."""

    deploy: bool
    metric: str
    champion: float | None
    challenger: float | None
    margin: float | None  # improvement of the challenger, positive = better
    min_improvement: float
    higher_is_better: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric_value(metrics: Mapping[str, Any] | None, metric: str) -> float | None:
    """The metric as a finite float, or None when missing, non-numeric or not finite."""
    if metrics is None or metric not in metrics:
        return None
    value = metrics[metric]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def decide(
    champion_metrics: Mapping[str, Any] | None,
    challenger_metrics: Mapping[str, Any] | None,
    *,
    metric: str,
    higher_is_better: bool,
    min_improvement: float,
) -> Decision:
    """Deploy the challenger only if it beats the champion on `metric` by `min_improvement`.

    `margin` is the challenger's improvement (challenger - champion when higher is better,
    champion - challenger otherwise). Deploy iff margin > 0 and margin >= min_improvement.
    `champion_metrics=None` means no champion serves: a challenger with a valid metric is
    deployed. A champion whose metrics lack `metric` cannot be compared: keep it.
    """
    if not metric:
        raise DriftloopError("gate: no metric named")
    try:
        threshold = float(min_improvement)
    except (TypeError, ValueError) as exc:
        raise DriftloopError(
            f"gate: min_improvement must be a number, not {min_improvement!r}"
        ) from exc
    if not math.isfinite(threshold) or threshold < 0:
        raise DriftloopError(
            f"gate: min_improvement must be finite and >= 0, not {min_improvement!r}"
        )

    challenger = _metric_value(challenger_metrics, metric)
    champion = _metric_value(champion_metrics, metric)

    def verdict(deploy: bool, margin: float | None, reason: str) -> Decision:
        return Decision(
            deploy=deploy,
            metric=metric,
            champion=champion,
            challenger=challenger,
            margin=margin,
            min_improvement=threshold,
            higher_is_better=higher_is_better,
            reason=reason,
        )

    if challenger is None:
        raw = None if challenger_metrics is None else challenger_metrics.get(metric)
        return verdict(
            False,
            None,
            f"challenger {metric} is missing or not finite ({raw!r}): keep the champion",
        )
    if champion_metrics is None:
        return verdict(
            True, None, f"no champion serves: deploy the challenger ({metric}={challenger:.6g})"
        )
    if champion is None:
        raw = champion_metrics.get(metric)
        return verdict(
            False,
            None,
            f"champion {metric} is missing or not finite ({raw!r}): "
            "cannot compare, keep the champion",
        )
    margin = challenger - champion if higher_is_better else champion - challenger
    if not math.isfinite(margin):
        return verdict(False, None, f"{metric} margin is not finite: keep the champion")
    direction = "higher" if higher_is_better else "lower"
    if margin > 0 and margin >= threshold:
        return verdict(
            True,
            margin,
            f"challenger {metric}={challenger:.6g} beats champion "
            f"{champion:.6g} by {margin:.6g} >= {threshold:.6g} ({direction} is better)",
        )
    return verdict(
        False,
        margin,
        f"challenger {metric}={challenger:.6g} vs champion {champion:.6g}: "
        f"improvement {margin:.6g} is below the required {threshold:.6g} "
        f"({direction} is better)",
    )
