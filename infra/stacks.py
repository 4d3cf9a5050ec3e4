"""driftloop's stacks: they create constructs, pass attributes between them and grant.

Stateful (data that must survive) <- Model (serving) <- Monitoring (scheduled checks,
alarms, events) <- Retraining (the workflow) <- Dashboard (one view of all of it).
`build_app` is what app.py and the tests call, so they synthesize the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import nag
from infra.config import DriftloopConfig
from infra.constructs.alerts import Alerts
from infra.constructs.endpoint import ModelEndpoint, endpoint_name_for
from infra.constructs.functions import (
    METRICS_NAMESPACE,
    SERVICE_DRIFT,
    SERVICE_QUALITY,
    ScheduledCheck,
    bundle_code,
)
from infra.constructs.storage import CAPTURE_PREFIX, GROUND_TRUTH_PREFIX, DataStore, StateTable
from infra.images import sklearn_image
from infra.lambda_bundle import build_lambda_bundle

BASELINE_KEY = "baselines/current/baseline.json"


def _output(scope: Construct, id_: str, value: str, description: str) -> cdk.CfnOutput:
    return cdk.CfnOutput(scope, id_, value=value, description=description)


BUCKETS = ("datasets", "artifacts", "capture", "ground_truth", "reports")


def export_name(prefix: str, name: str) -> str:
    return f"{prefix}-{name}"


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


@dataclass(frozen=True)
class SharedData:
    """The stateful stack's resources as another stack sees them (imported by export name).

    Explicit, named exports rather than CDK's generated ones: the names are stable and
    readable, and cdk-nag's findings (acknowledged one by one) quote them.
    """

    key: kms.IKey
    datasets: s3.IBucket
    artifacts: s3.IBucket
    capture: s3.IBucket
    ground_truth: s3.IBucket
    reports: s3.IBucket
    table: dynamodb.ITable
    table_name: str

    @classmethod
    def imported(cls, scope: Construct, prefix: str) -> SharedData:
        def value(name: str) -> str:
            return cdk.Fn.import_value(export_name(prefix, name))

        key = kms.Key.from_key_arn(scope, "DataKey", value("DataKeyArn"))
        buckets = {
            name: s3.Bucket.from_bucket_attributes(
                scope,
                f"{_camel(name)}Bucket",
                bucket_arn=value(f"{_camel(name)}BucketArn"),
                bucket_name=value(f"{_camel(name)}BucketName"),
                encryption_key=key,
            )
            for name in BUCKETS
        }
        table = dynamodb.Table.from_table_attributes(
            scope,
            "StateTable",
            table_arn=value("StateTableArn"),
            encryption_key=key,
        )
        return cls(key=key, table=table, table_name=value("StateTableName"), **buckets)


class StatefulStack(cdk.Stack):
    """KMS key, buckets, access logs and the state table: retained, termination-protected."""

    def __init__(
        self, scope: Construct, id_: str, *, config: DriftloopConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, id_, termination_protection=True, **kwargs)
        self.prefix = config.stack_prefix
        self.data = DataStore(
            self,
            "Data",
            capture_ia_days=config.capture_ia_days,
            capture_glacier_days=config.capture_glacier_days,
            capture_expire_days=config.capture_expire_days,
            noncurrent_expire_days=config.noncurrent_expire_days,
            log_expire_days=config.log_expire_days,
        )
        self.state = StateTable(self, "State", key=self.data.key)
        outputs = {"DataKeyArn": (self.data.key.key_arn, "the data KMS key")}
        for name, bucket in self.data.data_buckets.items():
            outputs[f"{_camel(name)}BucketName"] = (bucket.bucket_name, f"the {name} bucket")
            outputs[f"{_camel(name)}BucketArn"] = (bucket.bucket_arn, f"the {name} bucket ARN")
        outputs["StateTableName"] = (self.state.table.table_name, "the state table")
        outputs["StateTableArn"] = (self.state.table.table_arn, "the state table ARN")
        for id_out, (value, description) in outputs.items():
            cdk.CfnOutput(
                self,
                id_out,
                value=value,
                description=description,
                export_name=export_name(self.prefix, id_out),
            )


class ModelStack(cdk.Stack):
    """The SageMaker model, endpoint config (data capture), endpoint and autoscaling."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DriftloopConfig,
        stateful: StatefulStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.add_stack_dependency(stateful)
        self.prefix = stateful.prefix
        data = SharedData.imported(self, stateful.prefix)
        self.serving = ModelEndpoint(
            self,
            "Serving",
            endpoint_name=endpoint_name_for(config.stack_prefix),
            image_uri=sklearn_image(self, version=config.sklearn_version, image_scope="inference"),
            artifacts=data.artifacts,
            capture=data.capture,
            key=data.key,
            model_data_url=config.model_data_url,
            instance_type=config.instance_type,
            instance_count=config.instance_count,
            max_instance_count=config.max_instance_count,
            invocations_per_instance=config.invocations_per_instance,
            sampling_percentage=config.sampling_percentage,
            canary_percent=config.canary_percent,
            canary_wait_seconds=config.canary_wait_seconds,
            termination_wait_seconds=config.termination_wait_seconds,
            max_deploy_seconds=config.max_deploy_seconds,
            rollback_5xx_threshold=config.rollback_5xx_threshold,
            rollback_latency_ms=config.rollback_latency_ms,
        )
        _output(self, "EndpointName", self.serving.endpoint_name, "the SageMaker endpoint")
        _output(self, "VariantName", self.serving.variant_name, "the endpoint's variant")
        _output(self, "ModelRoleArn", self.serving.role.role_arn, "the SageMaker execution role")
        role = self.serving.role
        nag.ack_actions(
            role,
            [
                "s3:GetObject*",
                "s3:GetBucket*",
                "s3:List*",
                "s3:Abort*",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
            ],
        )
        nag.ack_objects(
            role,
            self.exported("ArtifactsBucketArn"),
            "",
            "the endpoint loads model.tar.gz files from anywhere in the artifacts "
            "bucket: models/initial/ and every models/{training job}/output/",
        )
        nag.ack_objects(
            role,
            self.exported("CaptureBucketArn"),
            "capture/",
            "data capture writes under capture/{endpoint}/{variant}/yyyy/mm/dd/hh/",
        )
        nag.ack(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
            "<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*]",
            "SageMaker names the endpoint's log group /aws/sagemaker/Endpoints/{name}",
        )
        nag.ack(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; the statement is "
            "conditioned on the /aws/sagemaker/* namespaces",
        )

    def exported(self, name: str) -> str:
        return export_name(self.prefix, name)


class MonitoringStack(cdk.Stack):
    """The scheduled drift and quality checks, the event bus, alerts topic and alarms."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DriftloopConfig,
        stateful: StatefulStack,
        model: ModelStack,
        code: lambda_.Code,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.add_stack_dependency(stateful)
        data, serving = SharedData.imported(self, stateful.prefix), model.serving
        table = data.table
        self.alerts = Alerts(self, "Alerts", alert_email=config.alert_email)
        common = {
            "ENDPOINT_NAME": serving.endpoint_name,
            "CAPTURE_BUCKET": data.capture.bucket_name,
            "CAPTURE_PREFIX": CAPTURE_PREFIX,
            "ARTIFACTS_BUCKET": data.artifacts.bucket_name,
            "BASELINE_KEY": BASELINE_KEY,
            "REPORTS_BUCKET": data.reports.bucket_name,
            "STATE_TABLE": data.table_name,
            "EVENT_BUS_NAME": self.alerts.bus.event_bus_name,
            "WINDOW_HOURS": str(config.window_hours),
            "GRACE_MINUTES": str(config.grace_minutes),
        }
        timeout = cdk.Duration.seconds(config.lambda_timeout_seconds)
        self.drift_check = ScheduledCheck(
            self,
            "DriftCheck",
            code=code,
            handler="lambdas.drift_check.handler",
            service=SERVICE_DRIFT,
            description="driftloop: data drift of the captured traffic against the baseline",
            environment={**common, "DRIFT_CONFIG": json.dumps(dict(config.drift), sort_keys=True)},
            schedule=config.drift_schedule,
            log_level=config.log_level,
            memory_mb=config.lambda_memory_mb,
            timeout=timeout,
            dead_letter_queue=self.alerts.dead_letter_queue,
        )
        self.quality_check = ScheduledCheck(
            self,
            "QualityCheck",
            code=code,
            handler="lambdas.quality_check.handler",
            service=SERVICE_QUALITY,
            description="driftloop: model quality of the captured predictions against ground truth",
            environment={
                **common,
                "GROUND_TRUTH_BUCKET": data.ground_truth.bucket_name,
                "GROUND_TRUTH_PREFIX": GROUND_TRUTH_PREFIX,
                "LABEL_DELAY_HOURS": str(config.label_delay_hours),
                "QUALITY_CONFIG": json.dumps(dict(config.quality), sort_keys=True),
            },
            schedule=config.quality_schedule,
            log_level=config.log_level,
            memory_mb=config.lambda_memory_mb,
            timeout=timeout,
            dead_letter_queue=self.alerts.dead_letter_queue,
        )
        for check in (self.drift_check, self.quality_check):
            fn = check.function
            data.capture.grant_read(fn, f"{CAPTURE_PREFIX}/*")
            data.artifacts.grant_read(fn, "baselines/*")
            data.reports.grant_put(fn)
            table.grant_read_write_data(fn)
            self.alerts.bus.grant_put_events_to(fn)
        data.ground_truth.grant_read(self.quality_check.function, f"{GROUND_TRUTH_PREFIX}/*")

        self.alarms = self._alarms(serving)
        _output(
            self,
            "DriftCheckFunctionName",
            self.drift_check.function.function_name,
            "the drift-check Lambda",
        )
        _output(
            self,
            "QualityCheckFunctionName",
            self.quality_check.function.function_name,
            "the quality-check Lambda",
        )
        _output(self, "EventBusName", self.alerts.bus.event_bus_name, "the driftloop event bus")
        _output(self, "AlertsTopicArn", self.alerts.topic.topic_arn, "the alerts topic")
        self._acknowledge(stateful.prefix)

    def _acknowledge(self, prefix: str) -> None:
        nag.ack(
            self.alerts.dead_letter_queue,
            "AwsSolutions-SQS3",
            "this queue is itself the dead-letter queue of the scheduled-check targets",
        )
        for check in (self.drift_check, self.quality_check):
            nag.ack_lambda(check.handler)
            nag.ack_actions(
                check.handler.role,
                [
                    "s3:GetObject*",
                    "s3:GetBucket*",
                    "s3:List*",
                    "s3:Abort*",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                ],
            )
            nag.ack_objects(
                check.handler.role,
                export_name(prefix, "CaptureBucketArn"),
                "capture/",
                "the check reads every captured window of the endpoint",
            )
            nag.ack_objects(
                check.handler.role,
                export_name(prefix, "ArtifactsBucketArn"),
                "baselines/",
                "the check reads the serving model's baseline profile",
            )
            nag.ack_objects(
                check.handler.role,
                export_name(prefix, "ReportsBucketArn"),
                "",
                "the check writes drift/... or quality/... report.json and .html",
            )
        nag.ack_objects(
            self.quality_check.handler.role,
            export_name(prefix, "GroundTruthBucketArn"),
            "ground-truth/",
            "the quality check reads the uploaded labels",
        )

    def check_metric(
        self, name: str, service: str, statistic: str = "Maximum"
    ) -> cloudwatch.Metric:
        """A metric the checks publish (EMF; dimensions Endpoint and Powertools' service)."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"Endpoint": self.endpoint_name, "service": service},
            statistic=statistic,
            period=cdk.Duration.hours(1),
        )

    def _alarms(self, serving: ModelEndpoint) -> dict[str, cloudwatch.Alarm]:
        self.endpoint_name = serving.endpoint_name
        at_least_one = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        specs: dict[str, tuple[str, cloudwatch.IMetric]] = {
            "DriftDetected": (
                "driftloop: data drift detected in a window of captured traffic",
                self.check_metric("DriftDetected", SERVICE_DRIFT),
            ),
            "QualityDegraded": (
                "driftloop: model quality dropped below the baseline",
                self.check_metric("QualityDegraded", SERVICE_QUALITY),
            ),
            "BaselineMissing": (
                "driftloop: the drift check found no baseline (nothing is being checked)",
                self.check_metric("BaselineMissing", SERVICE_DRIFT),
            ),
            "DriftCheckErrors": (
                "driftloop: the drift-check Lambda failed",
                self.drift_check.function.metric_errors(period=cdk.Duration.minutes(5)),
            ),
            "QualityCheckErrors": (
                "driftloop: the quality-check Lambda failed",
                self.quality_check.function.metric_errors(period=cdk.Duration.minutes(5)),
            ),
            "Endpoint5xx": (
                "driftloop: the endpoint returned 5xx errors",
                serving.metric("Invocation5XXErrors", period=cdk.Duration.minutes(5)),
            ),
            "UndeliveredScheduledRuns": (
                "driftloop: a scheduled check could not be invoked (dead-letter queue)",
                self.alerts.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=cdk.Duration.minutes(5), statistic="Maximum"
                ),
            ),
        }
        alarms: dict[str, cloudwatch.Alarm] = {}
        for id_, (description, metric) in specs.items():
            alarms[id_] = self.alerts.notify(
                cloudwatch.Alarm(
                    self,
                    f"{id_}Alarm",
                    alarm_description=description,
                    metric=metric,
                    threshold=1,
                    evaluation_periods=1,
                    comparison_operator=at_least_one,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
        return alarms


def stack_env(config: DriftloopConfig) -> cdk.Environment | None:
    if config.env_agnostic:
        return None
    return cdk.Environment(account=config.account, region=config.region)


def build_app(app: cdk.App, config: DriftloopConfig) -> dict[str, cdk.Stack]:
    """Create every driftloop stack in `app` (also used by the tests)."""
    env = stack_env(config)
    prefix = config.stack_prefix
    code = bundle_code(str(build_lambda_bundle()))
    stateful = StatefulStack(
        app,
        f"{prefix}Stateful",
        config=config,
        env=env,
        description="driftloop: data buckets, KMS key, state table",
    )
    model = ModelStack(
        app,
        f"{prefix}Model",
        config=config,
        stateful=stateful,
        env=env,
        description="driftloop: SageMaker endpoint with data capture",
    )
    monitoring = MonitoringStack(
        app,
        f"{prefix}Monitoring",
        config=config,
        stateful=stateful,
        model=model,
        code=code,
        env=env,
        description="driftloop: scheduled drift and quality checks, alarms",
    )
    stacks: dict[str, cdk.Stack] = {
        "stateful": stateful,
        "model": model,
        "monitoring": monitoring,
    }
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "driftloop")
    nag.add_checks(app)
    return stacks
