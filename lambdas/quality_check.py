"""Scheduled model-quality check: captured predictions joined with late ground truth.

Labels arrive after the prediction (a loan defaults months later; a click within a
day). The check therefore looks at a window only once LABEL_DELAY_HOURS have passed
after it closed: the window machinery is the drift check's (lambdas._scheduled), with
the delay added to the grace period. For each such window it reads the window's
captured predictions (every variant), the ground-truth files uploaded from the window's
start until the delay ran out (`{GROUND_TRUTH_PREFIX}/{endpoint}/yyyy/mm/dd/hh/`), joins
them by inferenceId / eventId, and compares the metrics with the training-time
validation metrics stored in the baseline (driftloop.quality does the maths). It writes
report.json + report.html under `quality/{endpoint}/...`, publishes metrics, and puts a
`Quality Degraded` event when the watched metric dropped by more than `max_drop`.

Labels uploaded later than the delay are not seen by that window's check (they are
counted as unmatched by a later window, if its hours hold them): pick the delay to
cover how late labels really arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from driftloop.batch import FeatureBatch
from driftloop.capture import read_capture
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.profile import DatasetProfile
from driftloop.quality import (
    QualityConfig,
    check_quality,
    join_predictions,
    predictions_by_id,
    read_ground_truth,
)
from driftloop.report import render_quality_html
from driftloop.windows import Window, format_iso, hour_prefixes_between, report_prefix
from lambdas import _aws, _scheduled
from lambdas._scheduled import capture_keys, load_baseline

logger = Logger()
metrics = Metrics()
tracer = Tracer()

DETAIL_TYPE = "Quality Degraded"


@dataclass(frozen=True)
class QualitySettings:
    capture_bucket: str
    capture_prefix: str
    ground_truth_bucket: str
    ground_truth_prefix: str
    artifacts_bucket: str
    baseline_key: str
    reports_bucket: str
    label_delay_hours: int
    config: dict[str, Any]

    @classmethod
    def from_env(cls) -> QualitySettings:
        raw = _aws.env_json("QUALITY_CONFIG", {})
        if not isinstance(raw, dict):
            raise _aws.ConfigError("environment variable QUALITY_CONFIG must be a JSON object")
        return cls(
            capture_bucket=_aws.env_str("CAPTURE_BUCKET"),
            capture_prefix=_aws.env_str("CAPTURE_PREFIX", "capture").strip("/"),
            ground_truth_bucket=_aws.env_str("GROUND_TRUTH_BUCKET"),
            ground_truth_prefix=_aws.env_str("GROUND_TRUTH_PREFIX", "ground-truth").strip("/"),
            artifacts_bucket=_aws.env_str("ARTIFACTS_BUCKET"),
            baseline_key=_aws.env_str("BASELINE_KEY", "baselines/current/baseline.json"),
            reports_bucket=_aws.env_str("REPORTS_BUCKET"),
            label_delay_hours=_aws.env_int("LABEL_DELAY_HOURS", 24),
            config=raw,
        )

    def quality_config(self, baseline: DatasetProfile) -> QualityConfig:
        """QUALITY_CONFIG, with the problem type taken from the baseline's schema by default."""
        raw = dict(self.config)
        if "problem" not in raw and baseline.schema.problem in ("binary", "regression"):
            raw["problem"] = baseline.schema.problem
        try:
            return QualityConfig.from_dict(raw, where="environment variable QUALITY_CONFIG")
        except DriftloopError as exc:
            raise _aws.ConfigError(str(exc)) from exc


def label_keys(
    bucket: str, prefix: str, endpoint: str, start: datetime, end: datetime
) -> list[str]:
    """Ground-truth files in the hour folders from `start` up to (not including) `end`."""
    keys: list[str] = []
    for hour in hour_prefixes_between(start, end):
        keys.extend(
            k
            for k in _aws.list_keys(bucket, f"{prefix}/{endpoint}/{hour}/")
            if k.endswith(".jsonl")
        )
    return sorted(keys)


def _capture_batches(
    bucket: str, keys: list[str], baseline: DatasetProfile, malformed: MalformedLog
) -> Iterator[FeatureBatch]:
    for key in keys:
        with _aws.download(bucket, key) as body:
            yield from read_capture(
                body, schema=baseline.schema, malformed=malformed, name=f"s3://{bucket}/{key}"
            )


def check_window(
    settings: QualitySettings,
    endpoint: str,
    baseline: DatasetProfile,
    config: QualityConfig,
    now: datetime,
    window: Window,
) -> _scheduled.WindowOutcome:
    """Join one window's predictions with their labels and compare with the baseline."""
    malformed = MalformedLog()
    capture = capture_keys(settings.capture_bucket, settings.capture_prefix, endpoint, window)
    predictions = predictions_by_id(
        _capture_batches(settings.capture_bucket, capture, baseline, malformed),
        malformed,
        name=f"capture {endpoint} {window}",
    )

    labels_until = min(now, window.end + timedelta(hours=settings.label_delay_hours))
    label_files = label_keys(
        settings.ground_truth_bucket,
        settings.ground_truth_prefix,
        endpoint,
        window.start,
        labels_until,
    )
    labels: dict[str, float] = {}
    for key in label_files:
        with _aws.download(settings.ground_truth_bucket, key) as body:
            read_ground_truth(
                body, malformed, f"s3://{settings.ground_truth_bucket}/{key}", labels=labels
            )

    joined = join_predictions(predictions, labels)
    result = check_quality(baseline.metrics, joined, config, malformed=malformed)
    report = result.to_dict()
    report.update(
        {
            "endpoint": endpoint,
            **window.to_dict(),
            "labels_until": format_iso(labels_until),
            "n_capture_files": len(capture),
            "n_label_files": len(label_files),
        }
    )

    prefix = report_prefix("quality", endpoint, window)
    report_uri = _aws.put_json(settings.reports_bucket, f"{prefix}/report.json", report)
    html = render_quality_html(report, title=f"driftloop quality report: {endpoint} {window}")
    _aws.put_bytes(
        settings.reports_bucket, f"{prefix}/report.html", html.encode(), "text/html; charset=utf-8"
    )

    current = {k: v["current"] for k, v in report["metrics"].items()}
    base = {k: v["baseline"] for k, v in report["metrics"].items()}
    drop = {k: v["drop"] for k, v in report["metrics"].items()}
    degraded = bool(result.degraded)
    event = None
    if degraded:
        event = (
            DETAIL_TYPE,
            {
                "endpoint": endpoint,
                **window.to_dict(),
                "report_uri": report_uri,
                "n_rows": result.n_matched,
                "metric": result.metric,
                "metrics": current,
                "baseline_metrics": base,
                "drop": drop,
            },
        )
    window_metrics: dict[str, float] = {
        "LabelsMatched": result.n_matched,
        "PredictionsUnlabelled": result.n_unlabelled,
        "LabelsUnmatched": result.n_unmatched_labels,
        "MalformedRows": result.n_malformed,
        "QualityDegraded": int(degraded),
        "InsufficientData": int(result.status != "ok"),
    }
    watched_drop = drop.get(result.metric)
    if result.status == "ok" and watched_drop is not None:
        window_metrics["QualityDrop"] = watched_drop
    per_metric = (
        {k: v for k, v in current.items() if v is not None} if result.status == "ok" else {}
    )
    return _scheduled.WindowOutcome(
        report_uri=report_uri,
        status=result.status,
        alert=degraded,
        event=event,
        metrics=window_metrics,
        per_feature=per_metric,
        per_feature_metric="ModelQuality",
        per_feature_dimension="Metric",
        summary={
            "n_matched": result.n_matched,
            "n_unlabelled": result.n_unlabelled,
            "n_malformed": result.n_malformed,
            "metric": result.metric,
            "value": current.get(result.metric),
            "drop": watched_drop,
        },
    )


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = QualitySettings.from_env()
    loop = _scheduled.loop_settings("quality", extra_delay_minutes=60 * settings.label_delay_hours)
    now = _aws.event_time(event)
    metrics.add_dimension(name="Endpoint", value=loop.endpoint)

    baseline = load_baseline(settings.artifacts_bucket, settings.baseline_key)
    where = f"s3://{settings.artifacts_bucket}/{settings.baseline_key}"
    if baseline is None:
        logger.error(f"baseline not found at {where}: no window checked, the checkpoint stays")
        metrics.add_metric(name="BaselineMissing", unit=MetricUnit.Count, value=1)
        return {
            "status": "baseline_missing",
            "endpoint": loop.endpoint,
            "baseline_uri": where,
            "windows_checked": 0,
        }
    config = settings.quality_config(baseline)
    if config.metric not in baseline.metrics:
        # Without the training-time value the check would be blind; keep the checkpoint.
        logger.error(
            f"baseline {where} has no {config.metric!r} training metric "
            f"(it has {sorted(baseline.metrics)}): no window checked"
        )
        metrics.add_metric(name="BaselineMissing", unit=MetricUnit.Count, value=1)
        return {
            "status": "baseline_metric_missing",
            "endpoint": loop.endpoint,
            "baseline_uri": where,
            "metric": config.metric,
            "windows_checked": 0,
        }

    summary = _scheduled.run_windows(
        loop,
        now,
        context,
        lambda w: check_window(settings, loop.endpoint, baseline, config, now, w),
        logger,
    )
    metrics.add_metric(name="BaselineMissing", unit=MetricUnit.Count, value=0)
    metrics.add_metric(
        name="WindowsChecked", unit=MetricUnit.Count, value=summary["windows_checked"]
    )
    metrics.add_metric(name="WindowsBehind", unit=MetricUnit.Count, value=summary["windows_behind"])
    return summary
