"""What an operator asks of a running loop: which retraining runs happened, and what serves now.

The answers already live in AWS: every retraining run is a model package in the
registry (approved or rejected, with its metrics and verdict in
CustomerMetadataProperties, written by lambdas.retrain_steps.register_model); the
endpoint says which model serves; the state table holds the checks' checkpoints and
the retraining lock; the reports bucket holds each window's verdict. This module reads
them into plain dicts for the CLI (`driftloop runs`, `driftloop status`).

The functions take boto3 clients as arguments (the CLI points them at AWS or at the local
moto server), so the core never imports boto3; `clients()` builds them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import orjson

from driftloop.errors import DriftloopError

METADATA_NUMBERS = ("champion_value", "challenger_value", "margin", "min_improvement", "n_holdout")
# How far back `status` looks for the last report before the checkpoint, a day at a time.
REPORT_LOOKBACK_DAYS = 31


def clients(endpoint_url: str | None = None, region: str | None = None) -> dict[str, Any]:
    """boto3 clients for sagemaker, s3 and dynamodb (one endpoint URL for moto's server)."""
    import boto3  # lazily: the core library never needs boto3 to import

    kwargs: dict[str, Any] = {}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["region_name"] = region
    return {name: boto3.client(name, **kwargs) for name in ("sagemaker", "s3", "dynamodb")}  # type: ignore[call-overload]


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return None if value is None else str(value)


def run_from_package(package: dict[str, Any]) -> dict[str, Any]:
    """One retraining run from a DescribeModelPackage response."""
    meta = dict(package.get("CustomerMetadataProperties") or {})
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
    sides: dict[str, dict[str, float | None]] = {"challenger": {}, "champion": {}}
    hyperparameters: dict[str, str] = {}
    for key, value in meta.items():
        side, _, name = key.partition(".")
        if side in sides and name:
            sides[side][name] = _number(value)
        elif side == "hp" and name:
            hyperparameters[name] = value
    run: dict[str, Any] = {
        "run_id": meta.get("run_id"),
        "version": package.get("ModelPackageVersion"),
        "created_at": _iso(package.get("CreationTime")),
        "approval": package.get("ModelApprovalStatus"),
        "decision": meta.get("decision"),
        "metric": meta.get("gate_metric"),
        "reason": meta.get("reason") or package.get("ModelPackageDescription"),
        "snapshot_id": meta.get("snapshot_id"),
        "training_job_name": meta.get("training_job_name"),
        "model_data_url": containers[0].get("ModelDataUrl"),
        "model_package_arn": package.get("ModelPackageArn"),
        "metrics": sides,
        "hyperparameters": hyperparameters,
    }
    for key in METADATA_NUMBERS:
        run[key.removesuffix("_value")] = _number(meta.get(key))
    return run


def list_runs(sagemaker_client: Any, model_package_group: str) -> list[dict[str, Any]]:
    """Every retraining run recorded in the group, newest first (decision, metrics, margin)."""
    arns: list[str] = []
    paginator = sagemaker_client.get_paginator("list_model_packages")
    try:
        for page in paginator.paginate(
            ModelPackageGroupName=model_package_group, SortBy="CreationTime", SortOrder="Descending"
        ):
            arns.extend(p["ModelPackageArn"] for p in page.get("ModelPackageSummaryList", []))
    except Exception as exc:
        if _error_code(exc) in ("ValidationException", "ResourceNotFound"):
            raise DriftloopError(f"model package group {model_package_group!r}: {exc}") from exc
        raise
    runs = [
        run_from_package(sagemaker_client.describe_model_package(ModelPackageName=arn))
        for arn in arns
    ]
    runs.sort(key=lambda r: r["version"] or 0, reverse=True)
    return runs


def _serving(sagemaker_client: Any, endpoint: str) -> dict[str, Any]:
    try:
        described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    except Exception as exc:
        if _error_code(exc) == "ValidationException":
            return {"status": "NotFound"}
        raise
    out: dict[str, Any] = {
        "status": described.get("EndpointStatus"),
        "endpoint_config_name": described.get("EndpointConfigName"),
        "last_modified": _iso(described.get("LastModifiedTime")),
        "failure_reason": described.get("FailureReason"),
    }
    config = sagemaker_client.describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"]
    )
    variant = (config.get("ProductionVariants") or [{}])[0]
    out["variant_name"] = variant.get("VariantName")
    out["model_name"] = variant.get("ModelName")
    if out["model_name"]:
        model = sagemaker_client.describe_model(ModelName=out["model_name"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        out["model_data_url"] = container.get("ModelDataUrl")
    capture = config.get("DataCaptureConfig") or {}
    out["data_capture"] = bool(capture.get("EnableCapture"))
    return out


def _state_item(dynamodb_client: Any, table: str, pk: str) -> dict[str, str] | None:
    item = dynamodb_client.get_item(TableName=table, Key={"pk": {"S": pk}}).get("Item")
    if not item:
        return None
    return {k: v.get("S", v.get("N", "")) for k, v in item.items() if k != "pk"}


def _last_report_key(s3_client: Any, bucket: str, prefix: str, before: str | None) -> str | None:
    """The newest `{prefix}yyyy/mm/dd/hh/report.json`, looking back a day at a time."""
    if before is None:
        days = [""]
    else:
        end = datetime.fromisoformat(before.replace("Z", "+00:00")) - timedelta(seconds=1)
        days = [
            (end - timedelta(days=d)).strftime("%Y/%m/%d/") for d in range(REPORT_LOOKBACK_DAYS)
        ]
    for day in days:
        newest = None
        paginator = s3_client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}{day}"):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/report.json") and (newest is None or key > newest):
                    newest = key
        if newest is not None:
            return newest
    return None


def _last_verdict(
    s3_client: Any, bucket: str, kind: str, endpoint: str, checkpoint: str | None
) -> dict[str, Any] | None:
    key = _last_report_key(s3_client, bucket, f"{kind}/{endpoint}/", checkpoint)
    if key is None:
        return None
    report = orjson.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    verdict = {
        "report_uri": f"s3://{bucket}/{key}",
        **{k: report.get(k) for k in ("window_start", "window_end", "status", "n_rows")},
    }
    if kind == "drift":
        verdict.update(
            {k: report.get(k) for k in ("dataset_drift", "drift_share", "drifted_features")}
        )
    else:
        metric = report.get("metric")
        watched = (report.get("metrics") or {}).get(metric) or {}
        verdict.update(
            {
                "degraded": report.get("degraded"),
                "metric": metric,
                "value": watched.get("current"),
                "drop": watched.get("drop"),
                "n_matched": report.get("n_matched"),
            }
        )
    return verdict


def status(
    sagemaker_client: Any,
    s3_client: Any,
    dynamodb_client: Any,
    *,
    endpoint: str,
    state_table: str,
    reports_bucket: str,
    model_package_group: str | None = None,
) -> dict[str, Any]:
    """What serves, which registry version it is, the checks' checkpoints and last verdicts."""
    serving = _serving(sagemaker_client, endpoint)
    if model_package_group and serving.get("model_data_url"):
        serving["model_package"] = None
        for run in list_runs(sagemaker_client, model_package_group):
            if run["model_data_url"] == serving["model_data_url"]:
                serving["model_package"] = {
                    k: run[k]
                    for k in ("version", "run_id", "approval", "created_at", "model_package_arn")
                }
                break
    out: dict[str, Any] = {"endpoint": endpoint, "serving": serving}
    for kind in ("drift", "quality"):
        item = _state_item(dynamodb_client, state_table, f"checkpoint#{kind}#{endpoint}")
        checkpoint = item.get("window_end") if item else None
        out[kind] = {
            "checked_until": checkpoint,
            "last": _last_verdict(s3_client, reports_bucket, kind, endpoint, checkpoint),
        }
    lock = _state_item(dynamodb_client, state_table, f"retrain-lock#{endpoint}")
    if lock and "reason" in lock:
        try:
            lock["reason"] = orjson.loads(lock["reason"])
        except orjson.JSONDecodeError:
            pass
    out["last_retraining"] = lock
    return out
