"""Start one retraining per drift storm: the EventBridge target of `Drift Detected` events.

A drifting endpoint keeps drifting: every scheduled check fires another event until a
new model serves. Starting a Step Functions execution per event would train the same
model many times. Two guards make a storm start exactly one run:

1. a conditional put on `retrain-lock#{endpoint}` in the state table that succeeds only
   when no lock exists or the lock is older than COOLDOWN_MINUTES (atomic, so concurrent
   invocations cannot both pass);
2. a ListExecutions(RUNNING) check on the state machine, for a run still going after the
   cooldown expired.

Only then StartExecution with the initial retraining state document (run_id, endpoint,
reason). Events for another endpoint (a bus-wide rule) are ignored.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from driftloop.errors import DriftloopError
from driftloop.windows import format_iso
from lambdas import _aws

logger = Logger()
metrics = Metrics()
tracer = Tracer()

LOCK_PREFIX = "retrain-lock#"


def lock_key(endpoint: str) -> str:
    return f"{LOCK_PREFIX}{endpoint}"


def new_run_id(endpoint: str, now: datetime) -> str:
    """A Step Functions execution name: <= 80 chars of [A-Za-z0-9-_], unique per run."""
    safe = re.sub(r"[^A-Za-z0-9-]", "-", endpoint)[:40].strip("-") or "endpoint"
    return f"{safe}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def _reason(event: dict[str, Any]) -> dict[str, Any]:
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    return {
        "source": event.get("source", "manual"),
        "detail_type": event.get("detail-type", "Manual"),
        "time": event.get("time"),
        "event_id": event.get("id"),
        "detail": detail,
    }


def _take_lock(
    table: str, endpoint: str, now: datetime, cooldown: timedelta, reason: dict[str, Any]
) -> bool:
    """The atomic cooldown: put the lock unless a younger one exists. True if we hold it."""
    try:
        _aws.dynamodb().put_item(
            TableName=table,
            Item={
                "pk": {"S": lock_key(endpoint)},
                "started_at": {"S": format_iso(now)},
                "execution_arn": {"S": ""},
                "reason": {"S": orjson.dumps(reason).decode()},
            },
            # ISO timestamps in one fixed format compare correctly as strings.
            ConditionExpression="attribute_not_exists(pk) OR started_at < :cutoff",
            ExpressionAttributeValues={":cutoff": {"S": format_iso(now - cooldown)}},
        )
    except Exception as exc:
        if _aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _set_lock_execution(table: str, endpoint: str, now: datetime, execution_arn: str) -> None:
    _aws.dynamodb().update_item(
        TableName=table,
        Key={"pk": {"S": lock_key(endpoint)}},
        UpdateExpression="SET execution_arn = :arn",
        ConditionExpression="started_at = :mine",
        ExpressionAttributeValues={":arn": {"S": execution_arn}, ":mine": {"S": format_iso(now)}},
    )


def _release_lock(table: str, endpoint: str, now: datetime) -> None:
    """Drop our lock after a failed start so the next event can retry (only if still ours)."""
    try:
        _aws.dynamodb().delete_item(
            TableName=table,
            Key={"pk": {"S": lock_key(endpoint)}},
            ConditionExpression="started_at = :mine",
            ExpressionAttributeValues={":mine": {"S": format_iso(now)}},
        )
    except Exception as exc:  # the lock then simply expires with the cooldown
        logger.warning("could not release the retrain lock", extra={"error": str(exc)})


def _running_execution(state_machine_arn: str) -> str | None:
    pages = (
        _aws.sfn()
        .get_paginator("list_executions")
        .paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    )
    for page in pages:
        for execution in page.get("executions", []):
            return str(execution["executionArn"])
    return None


def trigger(
    event: dict[str, Any],
    *,
    endpoint: str,
    table: str,
    state_machine_arn: str,
    cooldown_minutes: int,
    now: datetime,
) -> dict[str, Any]:
    """Decide and (maybe) start a retraining run. Returns what happened."""
    reason = _reason(event)
    event_endpoint = reason["detail"].get("endpoint")
    if event_endpoint and event_endpoint != endpoint:
        return {"started": False, "status": "other_endpoint", "endpoint": event_endpoint}

    if not _take_lock(table, endpoint, now, timedelta(minutes=cooldown_minutes), reason):
        return {"started": False, "status": "cooldown", "endpoint": endpoint}

    try:
        running = _running_execution(state_machine_arn)
        if running is None:
            run_id = new_run_id(endpoint, now)
            document = {
                "run_id": run_id,
                "endpoint": endpoint,
                "reason": reason,
                "started_at": format_iso(now),
            }
            resp = _aws.sfn().start_execution(
                stateMachineArn=state_machine_arn,
                name=run_id,
                input=orjson.dumps(document).decode(),
            )
    except Exception:
        # Whatever failed, the lock must not hold the cooldown for a run that never started.
        _release_lock(table, endpoint, now)
        raise
    if running is not None:
        # Keep the fresh lock, pointing at the run in progress: its new model should get a
        # full cooldown to prove itself before another retraining is considered.
        _set_lock_execution(table, endpoint, now, running)
        return {
            "started": False,
            "status": "already_running",
            "endpoint": endpoint,
            "execution_arn": running,
        }
    _set_lock_execution(table, endpoint, now, resp["executionArn"])
    return {
        "started": True,
        "status": "started",
        "endpoint": endpoint,
        "run_id": run_id,
        "execution_arn": resp["executionArn"],
    }


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    endpoint = _aws.env_str("ENDPOINT_NAME")
    table = _aws.env_str("STATE_TABLE")
    state_machine_arn = _aws.env_str("STATE_MACHINE_ARN")
    cooldown = _aws.env_int("COOLDOWN_MINUTES", 360)
    if not isinstance(event, dict):
        raise DriftloopError(
            f"retrain_trigger: expected an EventBridge event object, got {type(event).__name__}"
        )
    now = _aws.event_time(event)
    metrics.add_dimension(name="Endpoint", value=endpoint)

    result = trigger(
        event,
        endpoint=endpoint,
        table=table,
        state_machine_arn=state_machine_arn,
        cooldown_minutes=cooldown,
        now=now,
    )
    metrics.add_metric(
        name="RetrainingStarted", unit=MetricUnit.Count, value=int(result["started"])
    )
    metrics.add_metric(
        name="RetrainingSuppressed", unit=MetricUnit.Count, value=int(not result["started"])
    )
    logger.info("retrain trigger", extra=result)
    return result
