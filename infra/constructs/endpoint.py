"""The serving side: a SageMaker model on the prebuilt scikit-learn image, an endpoint
config that captures traffic for the drift check, the endpoint with blue/green (canary)
deployment guardrails that roll back on alarms, and target-tracking autoscaling.

The endpoint's name is derived from the deployment's stack prefix rather than generated
by CloudFormation: the rollback alarms watch metrics dimensioned by the endpoint's name
and the endpoint lists those alarms, so a generated name would be a dependency cycle.
The name is also the folder the capture lands under, so a stable one is what operators
want; two deployments in one account differ by their stack prefix.
"""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.constructs.sagemaker_role import grant_sagemaker_telemetry
from infra.constructs.storage import CAPTURE_PREFIX

VARIANT_NAME = "AllTraffic"
CSV_CONTENT_TYPES = ["text/csv"]
JSON_CONTENT_TYPES = ["application/json"]
# Instance families with local NVMe storage refuse an endpoint-config KmsKeyId (their
# volumes are hardware-encrypted instead).
_LOCAL_STORAGE_FAMILY = re.compile(r"^ml\.(?:[a-z]+\d+[a-z]*d[a-z]*|g5|g6|g6e|p4de?|p5e?|trn1)\.")


def endpoint_name_for(stack_prefix: str) -> str:
    """A valid SageMaker endpoint name (<= 63 chars, alphanumerics and '-') for a deployment."""
    name = re.sub(r"[^a-z0-9-]", "-", f"{stack_prefix.lower()}-endpoint").strip("-")
    name = re.sub(r"-{2,}", "-", name)
    return name[:63].rstrip("-") or "driftloop"


def has_local_storage(instance_type: str) -> bool:
    return bool(_LOCAL_STORAGE_FAMILY.match(instance_type))


def _parse_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


class ModelEndpoint(Construct):
    """SageMaker model + endpoint config (data capture) + endpoint (blue/green) + autoscaling.

    Public attributes: `role` (the SageMaker execution role, also used for models the
    retraining workflow deploys), `endpoint_name`, `variant_name`, `model`,
    `endpoint_config`, `endpoint`, `alarm_5xx`, `alarm_latency`, `capture_config` and
    `deployment_config` (the CloudFormation-shaped dicts, which are also exactly the
    shapes of the SageMaker API that the deploy step sends).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint_name: str,
        image_uri: str,
        artifacts: s3.IBucket,
        capture: s3.IBucket,
        key: kms.IKey,
        model_data_url: str | None,
        instance_type: str,
        instance_count: int,
        max_instance_count: int,
        invocations_per_instance: int,
        sampling_percentage: int,
        canary_percent: int,
        canary_wait_seconds: int,
        termination_wait_seconds: int,
        max_deploy_seconds: int,
        rollback_5xx_threshold: int,
        rollback_latency_ms: int,
    ) -> None:
        super().__init__(scope, id_)
        stack = cdk.Stack.of(self)
        self.endpoint_name = endpoint_name
        self.variant_name = VARIANT_NAME
        self.instance_type = instance_type
        self.instance_count = instance_count

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="driftloop SageMaker model: read model artifacts, write captured traffic",
        )
        artifacts.grant_read(self.role)
        capture.grant_put(self.role, f"{CAPTURE_PREFIX}/*")
        key.grant_encrypt_decrypt(self.role)
        grant_sagemaker_telemetry(self.role, stack, ["/aws/sagemaker/Endpoints/*"])
        if model_data_url is None:
            model_data_url = artifacts.s3_url_for_object("models/initial/model.tar.gz")
        else:
            bucket, object_key = _parse_s3_url(model_data_url)
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}/{object_key}"],
                )
            )
        self.model_data_url = model_data_url

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                model_data_url=model_data_url,
                environment=self.container_environment(),
            ),
        )
        # The model is validated on creation: the role must already carry its policy.
        self.model.node.add_dependency(self.role)

        self.capture_config: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": sampling_percentage,
            "DestinationS3Uri": capture.s3_url_for_object(CAPTURE_PREFIX),
            "KmsKeyId": key.key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": CSV_CONTENT_TYPES,
                "JsonContentTypes": JSON_CONTENT_TYPES,
            },
        }
        self.volume_kms_key_arn: str | None = (
            None if has_local_storage(instance_type) else key.key_arn
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    initial_instance_count=instance_count,
                    instance_type=instance_type,
                    initial_variant_weight=1.0,
                )
            ],
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=sampling_percentage,
                destination_s3_uri=self.capture_config["DestinationS3Uri"],
                kms_key_id=key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=(
                    sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                        csv_content_types=CSV_CONTENT_TYPES,
                        json_content_types=JSON_CONTENT_TYPES,
                    )
                ),
            ),
            kms_key_id=self.volume_kms_key_arn,
        )

        # The rollback alarms are named after the endpoint (not generated): the retraining
        # workflow's deploy step sends their names in every UpdateEndpoint, and literal
        # names keep that a plain value instead of a cross-stack reference to the alarms.
        self.rollback_alarm_names = (
            f"{endpoint_name}-rollback-5xx",
            f"{endpoint_name}-rollback-latency",
        )
        self.alarm_5xx = cloudwatch.Alarm(
            self,
            "Invocation5xxAlarm",
            alarm_name=self.rollback_alarm_names[0],
            alarm_description="Endpoint 5xx errors: rolls back a blue/green deployment",
            metric=self.metric("Invocation5XXErrors", statistic="Sum"),
            threshold=rollback_5xx_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarm_latency = cloudwatch.Alarm(
            self,
            "ModelLatencyAlarm",
            alarm_name=self.rollback_alarm_names[1],
            alarm_description="Endpoint p99 model latency: rolls back a blue/green deployment",
            # ModelLatency is reported in microseconds.
            metric=self.metric("ModelLatency", statistic="p99"),
            threshold=rollback_latency_ms * 1000,
            evaluation_periods=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.deployment_config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": canary_percent},
                    "WaitIntervalInSeconds": canary_wait_seconds,
                },
                "TerminationWaitInSeconds": termination_wait_seconds,
                "MaximumExecutionTimeoutInSeconds": max_deploy_seconds,
            },
            "AutoRollbackConfiguration": {
                "Alarms": [{"AlarmName": name} for name in self.rollback_alarm_names]
            },
        }
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        # The alarms must exist before SageMaker is told to watch them.
        self.endpoint.node.add_dependency(self.alarm_5xx, self.alarm_latency)
        # The CloudFormation shape is also the UpdateEndpoint API shape the deploy step
        # sends, so one dict serves both (an L1 property struct would not).
        self.endpoint.add_property_override("DeploymentConfig", self.deployment_config)

        # L1 on purpose: without RoleARN, Application Auto Scaling uses its service-linked
        # role for SageMaker (the L2 would create an empty custom role instead).
        self.scalable_target = appscaling.CfnScalableTarget(
            self,
            "ScalableTarget",
            service_namespace="sagemaker",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT_NAME}",
            min_capacity=instance_count,
            max_capacity=max_instance_count,
        )
        self.scalable_target.node.add_dependency(self.endpoint)
        self.scaling_policy = appscaling.CfnScalingPolicy(
            self,
            "InvocationsPerInstance",
            policy_name="InvocationsPerInstance",
            policy_type="TargetTrackingScaling",
            scaling_target_id=self.scalable_target.ref,
            target_tracking_scaling_policy_configuration=(
                appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                    target_value=invocations_per_instance,
                    predefined_metric_specification=(
                        appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                            predefined_metric_type="SageMakerVariantInvocationsPerInstance"
                        )
                    ),
                    scale_in_cooldown=300,
                    scale_out_cooldown=60,
                )
            ),
        )

    @staticmethod
    def container_environment() -> dict[str, str]:
        """Script mode for serving: the packer puts inference.py under code/ in model.tar.gz."""
        return {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": cdk.Aws.REGION,
        }

    def metric(
        self, name: str, *, statistic: str = "Sum", period: cdk.Duration | None = None
    ) -> cloudwatch.Metric:
        """An AWS/SageMaker endpoint metric of this endpoint's variant."""
        return cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name=name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": VARIANT_NAME},
            statistic=statistic,
            period=period or cdk.Duration.minutes(1),
        )
