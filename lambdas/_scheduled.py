"""The window loop shared by the scheduled checks (drift and quality).

Each scheduled run reads its checkpoint, plans the closed windows (driftloop.windows),
and for each one, oldest first: computes the window's report (the handler's callback),
puts its event, advances the checkpoint with a conditional write, and only then
publishes the window's metrics. The order is chosen so that:

- a failure anywhere before the checkpoint write leaves the window to the next run
  (nothing skipped); its report is simply rewritten then (same key);
- metrics are published only by the run that advanced the checkpoint, so a window is
  counted once even when two runs race (the loser stops);
- the event goes out before the checkpoint write: a crash in between repeats the event
  on the rerun, which is harmless (the retraining trigger has a cooldown lock), whereas
  the other order could lose a `Drift Detected` event for good.

Work per invocation is bounded by MAX_WINDOWS_PER_RUN and by the Lambda's remaining
time; a backlog (the schedule was off, or a long outage) is worked off by the following
runs, oldest first, and reported as the `WindowsBehind` metric.

It also holds what both checks read the same way: the baseline (`load_baseline`) and a
window's capture files across every variant (`capture_keys`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from driftloop.profile import DatasetProfile
from driftloop.windows import (
    Window,
    count_windows,
    format_iso,
    hour_prefixes,
    last_closed_window_start,
    plan_windows,
)
from lambdas import _aws

DEFAULT_MAX_WINDOWS = 24
DEFAULT_MIN_REMAINING_SECONDS = 30


@dataclass
class WindowOutcome:
    """What the handler's callback produced for one window."""

    report_uri: str
    status: str  # "ok" | "insufficient_data" | ...
    alert: bool  # drift detected / quality degraded
    event: tuple[str, dict[str, Any]] | None  # (detail-type, detail) to put, if any
    metrics: dict[str, float]  # window metrics (dimension Endpoint)
    per_feature: dict[str, float] = field(default_factory=dict)  # one document per entry
    per_feature_metric: str = "FeatureDriftScore"
    per_feature_dimension: str = "Feature"
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopSettings:
    kind: str  # "drift" | "quality": checkpoint#{kind}#{endpoint}
    endpoint: str
    table: str
    event_bus: str
    window_hours: int
    grace_minutes: int  # for quality: grace + the label delay
    max_windows: int
    min_remaining_ms: int
    first_window_start: datetime | None

    @property
    def checkpoint_key(self) -> str:
        return f"checkpoint#{self.kind}#{self.endpoint}"


def loop_settings(kind: str, *, extra_delay_minutes: int = 0) -> LoopSettings:
    """The loop's settings from the environment (ConfigError names a bad variable)."""
    return LoopSettings(
        kind=kind,
        endpoint=_aws.env_str("ENDPOINT_NAME"),
        table=_aws.env_str("STATE_TABLE"),
        event_bus=_aws.env_str("EVENT_BUS_NAME"),
        window_hours=_aws.env_int("WINDOW_HOURS", 1, minimum=1),
        grace_minutes=_aws.env_int("GRACE_MINUTES", 15) + extra_delay_minutes,
        max_windows=_aws.env_int("MAX_WINDOWS_PER_RUN", DEFAULT_MAX_WINDOWS, minimum=1),
        min_remaining_ms=1000
        * _aws.env_int("MIN_REMAINING_SECONDS", DEFAULT_MIN_REMAINING_SECONDS),
        first_window_start=_aws.env_time("FIRST_WINDOW_START"),
    )


def load_baseline(bucket: str, key: str) -> DatasetProfile | None:
    """The serving model's baseline profile; None when the object does not exist."""
    try:
        body = _aws.get_bytes(bucket, key)
    except Exception as exc:
        if _aws.is_missing(exc):
            return None
        raise
    return DatasetProfile.from_json(body, where=f"s3://{bucket}/{key}")


def capture_keys(bucket: str, prefix: str, endpoint: str, window: Window) -> list[str]:
    """Every capture file of the window: all variants, the window's hour folders, sorted."""
    keys: list[str] = []
    for variant in _aws.list_subfolders(bucket, f"{prefix}/{endpoint}/"):
        for hour in hour_prefixes(window):
            keys.extend(
                k for k in _aws.list_keys(bucket, f"{variant}{hour}/") if k.endswith(".jsonl")
            )
    return sorted(keys)


def emit_window_metrics(endpoint: str, outcome: WindowOutcome) -> None:
    """One EMF document for the window, then one per feature.

    Per-feature scores go out as separate documents: each needs its own Feature
    dimension, and EMF allows at most 100 metrics per document.
    """
    window_metrics = EphemeralMetrics()
    window_metrics.add_dimension(name="Endpoint", value=endpoint)
    for name, value in outcome.metrics.items():
        window_metrics.add_metric(name=name, unit=_unit(name), value=float(value))
    window_metrics.flush_metrics()
    for feature, score in outcome.per_feature.items():
        feature_metrics = EphemeralMetrics()
        feature_metrics.add_dimension(name="Endpoint", value=endpoint)
        feature_metrics.add_dimension(
            name=outcome.per_feature_dimension, value=feature[:250] or "-"
        )
        feature_metrics.add_metric(
            name=outcome.per_feature_metric, unit=MetricUnit.NoUnit, value=float(score)
        )
        feature_metrics.flush_metrics()


def _unit(name: str) -> MetricUnit:
    if name.startswith(("Rows", "Malformed", "Labels", "Predictions", "Windows")) or name.endswith(
        "Rows"
    ):
        return MetricUnit.Count
    return MetricUnit.NoUnit


def run_windows(
    settings: LoopSettings,
    now: datetime,
    context: Any,
    process: Callable[[Window], WindowOutcome],
    logger: Logger,
) -> dict[str, Any]:
    """Process every due window (bounded), advancing the checkpoint after each. A summary out."""
    previous = _aws.get_checkpoint(settings.table, settings.checkpoint_key)
    first = settings.first_window_start or last_closed_window_start(
        now, window_hours=settings.window_hours, grace_minutes=settings.grace_minutes
    )
    plan_kwargs: dict[str, Any] = {
        "window_hours": settings.window_hours,
        "grace_minutes": settings.grace_minutes,
        "first_window_start": first,
    }
    due = count_windows(previous, now, **plan_kwargs)
    windows = plan_windows(previous, now, limit=settings.max_windows, **plan_kwargs)

    done: list[dict[str, Any]] = []
    stopped = "caught_up" if len(windows) == due else "max_windows"
    slowest_ms = 0.0
    for window in windows:
        left = _aws.remaining_ms(context)
        # Start a window only with room for the slowest one so far (twice, to be safe).
        if left is not None and left < max(settings.min_remaining_ms, 2 * slowest_ms):
            stopped = "out_of_time"
            logger.warning(
                "stopping before the time limit; the next run continues",
                extra={"window": str(window), "remaining_ms": left},
            )
            break
        started = time.monotonic()
        outcome = process(window)
        if outcome.event is not None:
            detail_type, detail = outcome.event
            _aws.put_event(settings.event_bus, detail_type, detail)
        if not _aws.advance_checkpoint(
            settings.table, settings.checkpoint_key, previous, window.end
        ):
            stopped = "concurrent_run"
            logger.warning(
                "another run advanced the checkpoint first; stopping without counting this window",
                extra={"window": str(window)},
            )
            break
        previous = window.end
        emit_window_metrics(settings.endpoint, outcome)
        slowest_ms = max(slowest_ms, 1000 * (time.monotonic() - started))
        done.append(
            {
                **window.to_dict(),
                "status": outcome.status,
                "alert": outcome.alert,
                "report_uri": outcome.report_uri,
                **outcome.summary,
            }
        )
        logger.info(f"{settings.kind} window checked", extra=done[-1])

    return {
        "status": stopped,
        "endpoint": settings.endpoint,
        "checkpoint": format_iso(previous) if previous else None,
        "windows_checked": len(done),
        "windows_behind": due - len(done),
        "alerts": sum(1 for d in done if d["alert"]),
        "windows": done,
    }
