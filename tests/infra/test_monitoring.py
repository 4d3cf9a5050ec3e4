"""The monitoring stack: the checks' environment contract, schedules, grants, topic, alarms."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.constructs.alerts import Alerts
from tests.infra.conftest import Synth, only, resources

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

COMMON_ENV = {
    "ENDPOINT_NAME": "driftloop-endpoint",
    "CAPTURE_BUCKET": {"Fn::ImportValue": "Driftloop-CaptureBucketName"},
    "CAPTURE_PREFIX": "capture",
    "ARTIFACTS_BUCKET": {"Fn::ImportValue": "Driftloop-ArtifactsBucketName"},
    "BASELINE_KEY": "baselines/current/baseline.json",
    "REPORTS_BUCKET": {"Fn::ImportValue": "Driftloop-ReportsBucketName"},
    "STATE_TABLE": {"Fn::ImportValue": "Driftloop-StateTableName"},
    "WINDOW_HOURS": "1",
    "GRACE_MINUTES": "15",
    "POWERTOOLS_METRICS_NAMESPACE": "driftloop",
    "LOG_LEVEL": "INFO",
}


def _function(synth: Synth, handler: str) -> tuple[str, dict[str, Any]]:
    functions = resources(synth.templates["monitoring"], "AWS::Lambda::Function")
    matches = [(k, v) for k, v in functions.items() if v["Properties"]["Handler"] == handler]
    assert len(matches) == 1, handler
    return matches[0]


def _bus_ref(synth: Synth) -> dict[str, str]:
    (bus_id,) = resources(synth.templates["monitoring"], "AWS::Events::EventBus")
    return {"Fn::GetAtt": [bus_id, "Name"]}


def test_drift_check_environment_follows_the_contract(synth: Synth) -> None:
    # Given the drift-check function
    _, fn = _function(synth, "lambdas.drift_check.handler")
    env = fn["Properties"]["Environment"]["Variables"]
    # Then it has exactly the variables docs/ARCHITECTURE.md lists, plus Powertools'
    assert env == {
        **COMMON_ENV,
        "EVENT_BUS_NAME": _bus_ref(synth),
        "DRIFT_CONFIG": "{}",
        "POWERTOOLS_SERVICE_NAME": "drift-check",
    }
    props = fn["Properties"]
    assert props["Runtime"] == "python3.12" and props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] == 900 and props["MemorySize"] == 1024


def test_quality_check_environment_follows_the_contract(synth: Synth) -> None:
    _, fn = _function(synth, "lambdas.quality_check.handler")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env == {
        **COMMON_ENV,
        "EVENT_BUS_NAME": _bus_ref(synth),
        "GROUND_TRUTH_BUCKET": {"Fn::ImportValue": "Driftloop-GroundTruthBucketName"},
        "GROUND_TRUTH_PREFIX": "ground-truth",
        "LABEL_DELAY_HOURS": "24",
        "QUALITY_CONFIG": "{}",
        "POWERTOOLS_SERVICE_NAME": "quality-check",
    }


def test_checks_run_on_their_schedules_with_a_dead_letter_queue(synth: Synth) -> None:
    template = synth.templates["monitoring"]
    rules = resources(template, "AWS::Events::Rule")
    (dlq_id,) = resources(template, "AWS::SQS::Queue")
    schedules = {}
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        schedules[target["Arn"]["Fn::GetAtt"][0]] = rule["Properties"]["ScheduleExpression"]
        # Then undeliverable invocations are retried twice, then parked in the DLQ
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
        assert target["RetryPolicy"] == {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 3600,
        }
    drift_id, _ = _function(synth, "lambdas.drift_check.handler")
    quality_id, _ = _function(synth, "lambdas.quality_check.handler")
    assert schedules == {drift_id: "rate(1 hour)", quality_id: "rate(6 hours)"}


def _policy_of(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role_ref = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_ref} in policy["Properties"]["Roles"]:
            return list(policy["Properties"]["PolicyDocument"]["Statement"])
    raise AssertionError(f"no policy for {function_id}")


def _resources_for(statements: list[dict[str, Any]], action: str) -> list[Any]:
    out: list[Any] = []
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if action in actions:
            out += s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
    return out


def _join(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def test_check_grants_are_scoped(synth: Synth) -> None:
    template = synth.templates["monitoring"]
    drift_id, _ = _function(synth, "lambdas.drift_check.handler")
    quality_id, _ = _function(synth, "lambdas.quality_check.handler")
    for function_id in (drift_id, quality_id):
        statements = _policy_of(template, function_id)
        reads = _join(_resources_for(statements, "s3:GetObject*"))
        puts = _join(_resources_for(statements, "s3:PutObject"))
        # Then the check reads capture/ and baselines/ only, and writes reports only
        assert "Driftloop-CaptureBucketArn" in reads and '"/capture/*"' in reads
        assert "Driftloop-ArtifactsBucketArn" in reads and '"/baselines/*"' in reads
        assert "Driftloop-DatasetsBucketArn" not in reads
        assert "Driftloop-ReportsBucketArn" in puts and "Capture" not in puts
        # And it may put events on the driftloop bus only, and use the state table
        assert _resources_for(statements, "events:PutEvents") == [
            {"Fn::GetAtt": [next(iter(resources(template, "AWS::Events::EventBus"))), "Arn"]}
        ]
        assert _join(_resources_for(statements, "dynamodb:PutItem")).count("StateTableArn") >= 1
        # And the only "*" resource is X-Ray's
        star = [s for s in statements if s["Resource"] == "*"]
        assert all(a.startswith("xray:") for s in star for a in s["Action"])
    quality_reads = _join(_resources_for(_policy_of(template, quality_id), "s3:GetObject*"))
    assert (
        "Driftloop-GroundTruthBucketArn" in quality_reads and '"/ground-truth/*"' in quality_reads
    )
    drift_reads = _join(_resources_for(_policy_of(template, drift_id), "s3:GetObject*"))
    assert "GroundTruth" not in drift_reads


def test_functions_have_own_roles_and_log_retention(synth: Synth) -> None:
    template = synth.template("monitoring")
    # Then no function role carries an AWS managed policy
    for role in resources(synth.templates["monitoring"], "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
    template.resource_count_is("AWS::Logs::LogGroup", 2)
    template.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 90})


def test_topic_is_kms_encrypted_and_tls_only(synth: Synth) -> None:
    template = synth.templates["monitoring"]
    topic_id, topic = next(iter(resources(template, "AWS::SNS::Topic").items()))
    (key_id,) = resources(template, "AWS::KMS::Key")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    policy = only(template, "AWS::SNS::TopicPolicy")["Properties"]
    assert policy["Topics"] == [{"Ref": topic_id}]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["PolicyDocument"]["Statement"]
    )
    # And CloudWatch may use the topic's key (alarms publish to an encrypted topic)
    key_policy = template["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    principals: list[str] = []
    for statement in key_policy:
        service = statement.get("Principal", {}).get("Service", [])
        principals += [service] if isinstance(service, str) else service
    assert "cloudwatch.amazonaws.com" in principals and "events.amazonaws.com" in principals
    # And no e-mail subscription unless one is configured
    assert not resources(template, "AWS::SNS::Subscription")


def test_alert_email_subscribes_when_configured() -> None:
    # Given the Alerts construct with an address
    stack = cdk.Stack(cdk.App(), "AlertsUnderTest")
    Alerts(stack, "Alerts", alert_email="ops@example.com")
    # Then the topic has an e-mail subscription to it
    Template.from_stack(stack).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


def test_alarms_notify_the_topic(synth: Synth) -> None:
    template = synth.templates["monitoring"]
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    # Then drift, quality, baseline, Lambda errors, endpoint 5xx and the DLQ are watched
    assert set(alarms) == {
        "DriftDetected",
        "QualityDegraded",
        "BaselineMissing",
        "Errors",
        "Invocation5XXErrors",
        "ApproximateNumberOfMessagesVisible",
    }
    for props in resources(template, "AWS::CloudWatch::Alarm").values():
        p = props["Properties"]
        assert p["AlarmActions"] == [{"Ref": topic_id}] and p["OKActions"] == [{"Ref": topic_id}]
        assert p["Threshold"] == 1 and p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert p["TreatMissingData"] == "notBreaching"
    drift = alarms["DriftDetected"]
    assert drift["Namespace"] == "driftloop" and drift["Statistic"] == "Maximum"
    assert sorted(drift["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "Endpoint", "Value": "driftloop-endpoint"},
        {"Name": "service", "Value": "drift-check"},
    ]
    assert alarms["Invocation5XXErrors"]["Namespace"] == "AWS/SageMaker"
