"""Local blue/green emulation: canary share, bake, shift, rollback on the CDK's alarms.

Pure (no moto): these sit beside the closed-loop test because bluegreen.py is the local
runtime's stand-in for SageMaker's deployment engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftloop.errors import DriftloopError
from driftloop.local.bluegreen import BlueGreenDeployment, CanaryPolicy, RollbackAlarm

T0 = datetime(2026, 1, 8, tzinfo=UTC)
CONFIG = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
            "WaitIntervalInSeconds": 1800,
        },
        "TerminationWaitInSeconds": 120,
        "MaximumExecutionTimeoutInSeconds": 7200,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}, {"AlarmName": "latency"}]},
}
ALARMS = [
    RollbackAlarm.from_cloudwatch(
        {
            "AlarmName": "errors",
            "MetricName": "Invocation5XXErrors",
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "Statistic": "Sum",
        }
    ),
    RollbackAlarm.from_cloudwatch(
        {
            "AlarmName": "latency",
            "MetricName": "ModelLatency",
            "Threshold": 500_000,
            "ComparisonOperator": "GreaterThanThreshold",
            "ExtendedStatistic": "p99",
        }
    ),
]


def _deployment() -> BlueGreenDeployment:
    policy = CanaryPolicy.from_deployment_config(CONFIG)
    return BlueGreenDeployment(blue="m1", green="m2", policy=policy, alarms=ALARMS, started=T0)


def test_policy_is_read_from_the_deployment_config() -> None:
    # Given the CDK's DeploymentConfig, When read, Then share, bake and alarms match
    policy = CanaryPolicy.from_deployment_config(CONFIG)
    assert policy.canary_percent == 20.0
    assert policy.bake == timedelta(minutes=30)
    assert policy.alarm_names == ("errors", "latency")
    # And a config without a routing policy is a clear error
    with pytest.raises(DriftloopError, match="blue/green: DeploymentConfig lacks"):
        CanaryPolicy.from_deployment_config({"AutoRollbackConfiguration": {}})


def test_canary_share_is_exact_and_a_clean_bake_shifts_all_traffic() -> None:
    # Given a 20% canary
    dep = _deployment()
    # When 100 requests are routed during the bake, all healthy and fast
    routed = [dep.route() for _ in range(100)]
    for model in routed:
        dep.record(model, ok=True, latency_ms=20.0)
    # Then exactly 20 went to green, and nothing changes before the bake ends
    assert routed.count("m2") == 20
    assert dep.poll(T0 + timedelta(minutes=29)) == "baking"
    # And at the end of the bake all traffic shifts to green
    assert dep.poll(T0 + timedelta(minutes=30)) == "shifted"
    assert {dep.route() for _ in range(10)} == {"m2"}
    assert dep.to_dict()["canary_requests"] == 20


def test_an_error_on_green_rolls_back_during_the_bake() -> None:
    # Given a canary where green fails once
    dep = _deployment()
    for _ in range(10):
        model = dep.route()
        dep.record(model, ok=model == "m1", latency_ms=10.0)
    # When polled before the bake ends, Then it rolls back at once, and blue takes everything
    assert dep.poll(T0 + timedelta(minutes=1)) == "rolled_back"
    assert "errors" in dep.reason
    assert {dep.route() for _ in range(10)} == {"m1"}
    # And blue's errors never count against green
    dep2 = _deployment()
    dep2.record("m1", ok=False, latency_ms=10.0)
    assert dep2.poll(T0 + timedelta(hours=1)) == "shifted"


def test_slow_green_breaches_the_latency_alarm() -> None:
    # Given green answering in 0.8 s (800,000 us > the 500,000 us p99 threshold)
    dep = _deployment()
    for _ in range(50):
        model = dep.route()
        dep.record(model, ok=True, latency_ms=800.0 if model == "m2" else 10.0)
    # Then the latency alarm fires
    assert dep.breached() == ["latency"]
    assert dep.poll(T0 + timedelta(minutes=5)) == "rolled_back"


def test_alarms_on_metrics_the_router_cannot_see_are_refused() -> None:
    # Given an alarm on CPU, When read, Then a clear error names it
    with pytest.raises(DriftloopError, match="CPUUtilization"):
        RollbackAlarm.from_cloudwatch(
            {"AlarmName": "cpu", "MetricName": "CPUUtilization", "Threshold": 90}
        )


def test_update_endpoint_on_moto_goes_through_the_local_deployment_engine() -> None:
    from driftloop.local.bluegreen import SageMakerDeploymentEngine
    from driftloop.local.moto_server import MOTO_ACCOUNT_ID, MotoServer

    # Given an endpoint on moto serving config "blue", a "green" config, and the engine
    engine = SageMakerDeploymentEngine()
    with MotoServer() as aws:
        engine.install(MOTO_ACCOUNT_ID, aws.region)
        try:
            sm = aws.client("sagemaker")
            role = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/r"
            for name in ("blue", "green"):
                sm.create_model(
                    ModelName=name,
                    ExecutionRoleArn=role,
                    PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"},
                )
                sm.create_endpoint_config(
                    EndpointConfigName=name,
                    ProductionVariants=[
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": name,
                            "InitialInstanceCount": 1,
                            "InstanceType": "ml.m5.large",
                        }
                    ],
                )
            sm.create_endpoint(EndpointName="ep", EndpointConfigName="blue")
            # When the deploy step calls UpdateEndpoint with a DeploymentConfig
            sm.update_endpoint(
                EndpointName="ep", EndpointConfigName="green", DeploymentConfig=CONFIG
            )
            # Then the endpoint is Updating and the request reaches the engine
            assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Updating"
            (request,) = engine.take()
            assert (request.old_config, request.new_config) == ("blue", "green")
            assert (
                request.deployment_config["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"]
                == 120
            )
            # And a second update while one runs is refused, as SageMaker does
            with pytest.raises(sm.exceptions.ClientError, match="in-progress"):
                sm.update_endpoint(EndpointName="ep", EndpointConfigName="green")
            # When the deployment rolls back, Then blue serves again, InService
            engine.finish(request, shifted=False)
            described = sm.describe_endpoint(EndpointName="ep")
            assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
                "InService",
                "blue",
            )
            # And a shifted deployment leaves green serving
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="green")
            engine.finish(engine.take()[0], shifted=True)
            assert sm.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "green"
        finally:
            engine.uninstall()
