"""The retraining trigger under moto: cooldown lock, already-running check, one run per storm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lambdas import retrain_trigger
from tests.integration.conftest import FakeLambdaContext, emf_records, load_event, metric_values

ENDPOINT = "loan-default"
T0 = datetime(2026, 11, 1, 6, 20, tzinfo=UTC)


@pytest.fixture
def env(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName="state",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    arn = boto3.client("stepfunctions").create_state_machine(
        name="retrain",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    values = {
        "ENDPOINT_NAME": ENDPOINT,
        "STATE_TABLE": "state",
        "STATE_MACHINE_ARN": arn,
        "COOLDOWN_MINUTES": "120",
        "POWERTOOLS_SERVICE_NAME": "retrain-trigger",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def drift_event(when: datetime, **detail: Any) -> dict[str, Any]:
    event = load_event("drift_event", time=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    event["detail"] = {**event["detail"], **detail}
    return event


def executions(arn: str) -> list[dict[str, Any]]:
    return boto3.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]


def test_a_storm_of_100_drift_events_in_an_hour_starts_exactly_one_retraining(
    env: dict[str, str],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given 100 drift events spread over one hour and a two-hour cooldown
    results = [
        retrain_trigger.handler(drift_event(T0 + timedelta(seconds=36 * i)), lambda_context)
        for i in range(100)
    ]
    # Then exactly one Step Functions execution was started
    started = [r for r in results if r["started"]]
    assert len(started) == 1 and results[0]["started"]
    assert {r["status"] for r in results[1:]} == {"cooldown"}
    runs = executions(env["STATE_MACHINE_ARN"])
    assert len(runs) == 1
    # And it carries the initial state document with the triggering event as reason
    described = boto3.client("stepfunctions").describe_execution(
        executionArn=runs[0]["executionArn"]
    )
    doc = json.loads(described["input"])
    assert doc["run_id"] == started[0]["run_id"] == runs[0]["name"]
    assert doc["endpoint"] == ENDPOINT
    assert doc["reason"]["detail_type"] == "Drift Detected"
    assert doc["reason"]["detail"]["drifted_features"] == ["income", "region"]
    # And the lock records the execution
    lock = boto3.client("dynamodb").get_item(
        TableName="state", Key={"pk": {"S": f"retrain-lock#{ENDPOINT}"}}
    )["Item"]
    assert lock["execution_arn"]["S"] == runs[0]["executionArn"]
    assert lock["started_at"]["S"] == "2026-11-01T06:20:00Z"
    # And the metrics count one start and 99 suppressions
    records = emf_records(capsys.readouterr().out)
    assert sum(metric_values(records, "RetrainingStarted", Endpoint=ENDPOINT)) == 1
    assert sum(metric_values(records, "RetrainingSuppressed", Endpoint=ENDPOINT)) == 99


def test_after_the_cooldown_a_still_running_execution_blocks_a_second_start(
    env: dict[str, str],
    lambda_context: FakeLambdaContext,
) -> None:
    # Given a retraining started at T0 that is still running three hours later
    first = retrain_trigger.handler(drift_event(T0), lambda_context)
    assert first["started"]
    # When a drift event arrives after the two-hour cooldown
    later = retrain_trigger.handler(drift_event(T0 + timedelta(hours=3)), lambda_context)
    # Then no second execution starts: the running one is reported instead
    assert later == {
        "started": False,
        "status": "already_running",
        "endpoint": ENDPOINT,
        "execution_arn": first["execution_arn"],
    }
    assert len(executions(env["STATE_MACHINE_ARN"])) == 1


def test_after_the_cooldown_and_the_run_finished_a_new_retraining_starts(
    env: dict[str, str],
    lambda_context: FakeLambdaContext,
) -> None:
    # Given a first retraining that has finished
    first = retrain_trigger.handler(drift_event(T0), lambda_context)
    boto3.client("stepfunctions").stop_execution(executionArn=first["execution_arn"])
    # When drift is still reported within the cooldown, and then after it
    within = retrain_trigger.handler(drift_event(T0 + timedelta(minutes=119)), lambda_context)
    after = retrain_trigger.handler(drift_event(T0 + timedelta(minutes=121)), lambda_context)
    # Then only the event after the cooldown starts a second run
    assert within["status"] == "cooldown"
    assert after["started"] and after["run_id"] != first["run_id"]
    assert len(executions(env["STATE_MACHINE_ARN"])) == 2


def test_events_for_another_endpoint_are_ignored(
    env: dict[str, str],
    lambda_context: FakeLambdaContext,
) -> None:
    # Given a drift event about a different endpoint on the same bus
    result = retrain_trigger.handler(drift_event(T0, endpoint="other"), lambda_context)
    # Then nothing starts and no lock is taken
    assert result["status"] == "other_endpoint"
    assert executions(env["STATE_MACHINE_ARN"]) == []
    assert "Item" not in boto3.client("dynamodb").get_item(
        TableName="state", Key={"pk": {"S": f"retrain-lock#{ENDPOINT}"}}
    )


def test_a_failed_start_releases_the_lock_so_the_next_event_retries(
    env: dict[str, str],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a state machine ARN that does not exist (StartExecution fails)
    good = env["STATE_MACHINE_ARN"]
    monkeypatch.setenv("STATE_MACHINE_ARN", good.replace(":retrain", ":missing"))
    with pytest.raises(Exception, match="(?i)does not exist|StateMachineDoesNotExist"):
        retrain_trigger.handler(drift_event(T0), lambda_context)
    # When the configuration is fixed and the next event arrives within the cooldown
    monkeypatch.setenv("STATE_MACHINE_ARN", good)
    result = retrain_trigger.handler(drift_event(T0 + timedelta(minutes=10)), lambda_context)
    # Then it starts the retraining: the failed attempt did not hold the cooldown
    assert result["started"]


def test_missing_environment_is_a_clear_error(
    env: dict[str, str],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATE_MACHINE_ARN")
    with pytest.raises(retrain_trigger._aws.ConfigError, match="STATE_MACHINE_ARN is not set"):
        retrain_trigger.handler(drift_event(T0), lambda_context)


def test_a_quality_event_starts_retraining_and_shares_the_drift_cooldown(
    env: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    # Given a Quality Degraded event, then a drift event an hour later
    quality = load_event("quality_event", time="2026-11-01T06:20:00Z")
    first = retrain_trigger.handler(quality, lambda_context)
    second = retrain_trigger.handler(drift_event(T0 + timedelta(hours=1)), lambda_context)
    # Then the quality event started the run, with its detail as the reason,
    # and the drift event fell inside the same cooldown
    assert first["started"] and second["status"] == "cooldown"
    described = boto3.client("stepfunctions").describe_execution(
        executionArn=first["execution_arn"]
    )
    reason = json.loads(described["input"])["reason"]
    assert reason["detail_type"] == "Quality Degraded"
    assert reason["detail"]["drop"]["auc"] == 0.15
