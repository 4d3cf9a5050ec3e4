"""Scheduled data-drift check of one SageMaker endpoint's captured traffic.

EventBridge invokes this on a schedule. For every closed window since the checkpoint
(lambdas._scheduled has the loop and its guarantees), it streams the window's capture
files (every variant, the window's hour folders) through the core reader and profiler
on the baseline's bins, merges the per-file profiles, compares the merged profile with
the baseline, writes report.json + report.html to the reports bucket, puts a
`Drift Detected` event when the dataset drifted, and publishes CloudWatch metrics
(EMF). All statistics live in driftloop.profile / driftloop.drift; this module only
moves bytes.

A missing baseline is a deployment problem, not a data problem: the run logs one clear
error, publishes `BaselineMissing`, and leaves the checkpoint where it is so no window
is lost while it is fixed. A malformed capture line is counted (the report's ledger and
the `MalformedRows` metric), never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from driftloop.capture import read_capture
from driftloop.drift import DriftConfig, compare
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.profile import DatasetProfile, empty_profile, profile_batch
from driftloop.report import render_html
from driftloop.windows import Window, report_prefix
from lambdas import _aws, _scheduled
from lambdas._scheduled import capture_keys, load_baseline

logger = Logger()
metrics = Metrics()
tracer = Tracer()

DETAIL_TYPE = "Drift Detected"


@dataclass(frozen=True)
class DriftSettings:
    capture_bucket: str
    capture_prefix: str
    artifacts_bucket: str
    baseline_key: str
    reports_bucket: str
    config: DriftConfig

    @classmethod
    def from_env(cls) -> DriftSettings:
        raw = _aws.env_json("DRIFT_CONFIG", {})
        if not isinstance(raw, dict):
            raise _aws.ConfigError("environment variable DRIFT_CONFIG must be a JSON object")
        try:
            config = DriftConfig.from_dict(raw)
        except DriftloopError as exc:
            raise _aws.ConfigError(f"environment variable DRIFT_CONFIG: {exc}") from exc
        return cls(
            capture_bucket=_aws.env_str("CAPTURE_BUCKET"),
            capture_prefix=_aws.env_str("CAPTURE_PREFIX", "capture").strip("/"),
            artifacts_bucket=_aws.env_str("ARTIFACTS_BUCKET"),
            baseline_key=_aws.env_str("BASELINE_KEY", "baselines/current/baseline.json"),
            reports_bucket=_aws.env_str("REPORTS_BUCKET"),
            config=config,
        )


def profile_window(
    bucket: str, keys: list[str], baseline: DatasetProfile, malformed: MalformedLog
) -> DatasetProfile:
    """Stream every file through the reader and profiler, merging as it goes (constant memory).

    An empty window gives the empty profile (zero rows), which the comparison reports as
    insufficient data.
    """
    merged = empty_profile(baseline)
    for key in keys:
        with _aws.download(bucket, key) as body:
            for batch in read_capture(
                body, schema=baseline.schema, malformed=malformed, name=f"s3://{bucket}/{key}"
            ):
                merged = merged.merge(profile_batch(batch, baseline))
    merged.n_malformed = malformed.total
    return merged


def feature_scores(report: dict[str, Any]) -> dict[str, float]:
    """Per-feature drift score from the report (the statistic its test compared)."""
    out: dict[str, float] = {}
    features = report.get("features") or {}
    items = (
        features.items()
        if isinstance(features, dict)
        else ((f.get("name"), f) for f in features if isinstance(f, dict))
    )
    for name, row in items:
        if not isinstance(row, dict) or not name:
            continue
        score = row.get("score", row.get("statistic", row.get("distance")))
        if isinstance(score, int | float) and not isinstance(score, bool) and np.isfinite(score):
            out[str(name)] = float(score)
    return out


def check_window(
    settings: DriftSettings, endpoint: str, baseline: DatasetProfile, window: Window
) -> _scheduled.WindowOutcome:
    """Profile, compare and report one window."""
    keys = capture_keys(settings.capture_bucket, settings.capture_prefix, endpoint, window)
    malformed = MalformedLog()
    current = profile_window(settings.capture_bucket, keys, baseline, malformed)
    report = compare(baseline, current, settings.config).to_dict()
    report.update(
        {
            "endpoint": endpoint,
            **window.to_dict(),
            "n_files": len(keys),
            "malformed": malformed.to_dict(),
            "n_malformed": malformed.total,
        }
    )

    prefix = report_prefix("drift", endpoint, window)
    report_uri = _aws.put_json(settings.reports_bucket, f"{prefix}/report.json", report)
    html = render_html(
        report, baseline, current, title=f"driftloop drift report: {endpoint} {window}"
    )
    _aws.put_bytes(
        settings.reports_bucket, f"{prefix}/report.html", html.encode(), "text/html; charset=utf-8"
    )

    status = str(report.get("status", "ok"))
    drifted = bool(report.get("dataset_drift", False)) and status == "ok"
    n_rows = int(report.get("n_rows", current.n_rows))
    drift_share = float(report.get("drift_share") or 0.0)
    drifted_features = list(report.get("drifted_features") or [])
    event = None
    if drifted:
        event = (
            DETAIL_TYPE,
            {
                "endpoint": endpoint,
                **window.to_dict(),
                "report_uri": report_uri,
                "drifted_features": drifted_features,
                "drift_share": drift_share,
                "n_rows": n_rows,
            },
        )
    window_metrics: dict[str, float] = {
        "RowsChecked": n_rows,
        "MalformedRows": malformed.total,
        "DriftDetected": int(drifted),
        "InsufficientData": int(status != "ok"),
    }
    if status == "ok":
        window_metrics["DriftShare"] = drift_share
        prediction = report.get("prediction_drift") or {}
        if isinstance(prediction.get("score"), int | float):
            window_metrics["PredictionDriftScore"] = float(prediction["score"])
    return _scheduled.WindowOutcome(
        report_uri=report_uri,
        status=status,
        alert=drifted,
        event=event,
        metrics=window_metrics,
        per_feature=feature_scores(report) if status == "ok" else {},
        summary={
            "n_rows": n_rows,
            "n_files": len(keys),
            "n_malformed": malformed.total,
            "drift_share": drift_share,
            "drifted_features": drifted_features,
        },
    )


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    loop = _scheduled.loop_settings("drift")
    settings = DriftSettings.from_env()
    now = _aws.event_time(event)
    metrics.add_dimension(name="Endpoint", value=loop.endpoint)

    baseline = load_baseline(settings.artifacts_bucket, settings.baseline_key)
    if baseline is None:
        where = f"s3://{settings.artifacts_bucket}/{settings.baseline_key}"
        logger.error(f"baseline not found at {where}: no window checked, the checkpoint stays")
        metrics.add_metric(name="BaselineMissing", unit=MetricUnit.Count, value=1)
        return {
            "status": "baseline_missing",
            "endpoint": loop.endpoint,
            "baseline_uri": where,
            "windows_checked": 0,
        }

    summary = _scheduled.run_windows(
        loop, now, context, lambda w: check_window(settings, loop.endpoint, baseline, w), logger
    )
    metrics.add_metric(name="BaselineMissing", unit=MetricUnit.Count, value=0)
    metrics.add_metric(
        name="WindowsChecked", unit=MetricUnit.Count, value=summary["windows_checked"]
    )
    metrics.add_metric(name="WindowsBehind", unit=MetricUnit.Count, value=summary["windows_behind"])
    return summary
