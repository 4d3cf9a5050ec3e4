"""The model stack: image from the SDK, capture config, blue/green with rollback, scaling."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra import images
from infra.constructs.endpoint import has_local_storage
from tests.infra.conftest import Synth, only, resources

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def _model(synth: Synth) -> dict[str, Any]:
    return only(synth.templates["model"], "AWS::SageMaker::Model")["Properties"]


def test_image_mapping_covers_every_sdk_region(synth: Synth) -> None:
    # Given the env-agnostic model stack
    template = synth.templates["model"]
    mapping = template["Mappings"][images.MAPPING_ID]
    # Then the image comes from a mapping over every region the SDK lists, each entry being
    # exactly what sagemaker.core.image_uris.retrieve returns for that region
    version = synth.config.sklearn_version
    assert sorted(mapping) == sorted(images.sdk_regions(version))
    assert len(mapping) > 20
    for region in ("us-east-1", "eu-west-1", "cn-north-1"):
        if region in mapping:
            expected = images._image_uris_module().retrieve(
                "sklearn", region=region, version=version, image_scope="inference"
            )
            assert mapping[region]["inference"] == expected
    assert _model(synth)["PrimaryContainer"]["Image"] == {
        "Fn::FindInMap": [images.MAPPING_ID, {"Ref": "AWS::Region"}, "inference"]
    }


def test_model_uses_script_mode_and_the_seed_model(synth: Synth) -> None:
    container = _model(synth)["PrimaryContainer"]
    # Then the container runs inference.py from the model's code/ folder
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    # And the default model data is the seed model in the artifacts bucket
    assert container["ModelDataUrl"] == {
        "Fn::Join": [
            "",
            [
                "s3://",
                {"Fn::ImportValue": "Driftloop-ArtifactsBucketName"},
                "/models/initial/model.tar.gz",
            ],
        ]
    }


def test_data_capture_config(synth: Synth) -> None:
    # Then every request and response is captured, KMS-encrypted, under capture/,
    # with CSV and JSON written as text (not BASE64)
    synth.template("model").has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 100,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {
                    "CsvContentTypes": ["text/csv"],
                    "JsonContentTypes": ["application/json"],
                },
                "KmsKeyId": {"Fn::ImportValue": "Driftloop-DataKeyArn"},
                "DestinationS3Uri": {
                    "Fn::Join": [
                        "",
                        ["s3://", {"Fn::ImportValue": "Driftloop-CaptureBucketName"}, "/capture"],
                    ]
                },
            },
            "KmsKeyId": {"Fn::ImportValue": "Driftloop-DataKeyArn"},
            "ProductionVariants": [
                Match.object_like(
                    {
                        "VariantName": "AllTraffic",
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                    }
                )
            ],
        },
    )


def test_blue_green_canary_with_alarm_rollback(synth: Synth) -> None:
    # Given the endpoint and the alarms of the model stack
    template = synth.templates["model"]
    endpoint = only(template, "AWS::SageMaker::Endpoint")["Properties"]
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    deploy = endpoint["DeploymentConfig"]
    # Then updates shift 10% of capacity first, wait, and roll back on either alarm
    assert deploy["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 600,
        },
        "TerminationWaitInSeconds": 300,
        "MaximumExecutionTimeoutInSeconds": 3600,
    }
    rollback = [a["AlarmName"] for a in deploy["AutoRollbackConfiguration"]["Alarms"]]
    names = sorted(a["Properties"]["AlarmName"] for a in alarms.values())
    assert (
        sorted(rollback)
        == names
        == [
            "driftloop-endpoint-rollback-5xx",
            "driftloop-endpoint-rollback-latency",
        ]
    )
    assert endpoint["EndpointName"] == "driftloop-endpoint"


def test_rollback_alarms_watch_the_endpoint(synth: Synth) -> None:
    # Then one alarm fires on any 5xx in a minute, one on p99 latency over 1 s (in µs)
    alarms = list(resources(synth.templates["model"], "AWS::CloudWatch::Alarm").values())
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms}
    dims = [
        {"Name": "EndpointName", "Value": "driftloop-endpoint"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    five = by_metric["Invocation5XXErrors"]
    assert five["Namespace"] == "AWS/SageMaker" and five["Dimensions"] == dims
    assert five["Statistic"] == "Sum" and five["Period"] == 60
    assert five["Threshold"] == 1 and five["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    latency = by_metric["ModelLatency"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == 1_000_000
    assert latency["Dimensions"] == dims


def test_target_tracking_autoscaling(synth: Synth) -> None:
    template = synth.template("model")
    # Then the variant scales between 1 and 2 instances with the service-linked role
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ResourceId": "endpoint/driftloop-endpoint/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ServiceNamespace": "sagemaker",
            "MinCapacity": 1,
            "MaxCapacity": 2,
            "RoleARN": Match.absent(),
        },
    )
    # And tracks invocations per instance
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "TargetValue": 1000,
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    target = only(synth.templates["model"], "AWS::ApplicationAutoScaling::ScalableTarget")
    assert any("Endpoint" in dep for dep in target["DependsOn"])


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_execution_role_is_scoped(synth: Synth) -> None:
    # Given the SageMaker execution role's statements
    statements = _statements(synth.templates["model"])
    # Then the only "*" resource is PutMetricData, limited to SageMaker's namespaces
    star = [s for s in statements if s["Resource"] == "*"]
    assert star == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]
    # And capture may only be written under capture/
    puts = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert puts and all("/capture/*" in str(s["Resource"]) for s in puts)
    # And no statement grants a service-wide action
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement


def test_local_storage_instances_get_no_volume_key() -> None:
    # Instance families with NVMe instance storage refuse an endpoint-config KmsKeyId
    assert has_local_storage("ml.m5d.large") and has_local_storage("ml.g5.xlarge")
    assert has_local_storage("ml.g4dn.xlarge")
    assert not has_local_storage("ml.m5.large") and not has_local_storage("ml.c6i.2xlarge")
