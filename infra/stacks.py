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
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from driftloop import naming
from infra import nag
from infra.config import DriftloopConfig
from infra.constructs.alerts import Alerts
from infra.constructs.dashboard import LoopDashboard
from infra.constructs.endpoint import ModelEndpoint, endpoint_name_for
from infra.constructs.functions import (
    METRICS_NAMESPACE,
    SERVICE_DRIFT,
    SERVICE_QUALITY,
    ScheduledCheck,
    bundle_code,
)
from infra.constructs.retraining import RetrainTrigger, RetrainWorkflow
from infra.constructs.storage import CAPTURE_PREFIX, GROUND_TRUTH_PREFIX, DataStore, StateTable
from infra.images import sklearn_image
from infra.lambda_bundle import build_lambda_bundle, build_sourcedir, script_asset_file

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
        bundle: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        code = bundle_code(bundle)  # one Code object per stack (the asset binds to it)
        self.add_stack_dependency(stateful)
        data, serving = SharedData.imported(self, stateful.prefix), model.serving
        table = data.table
        self.endpoint_name = serving.endpoint_name
        self.alerts = Alerts(self, "Alerts", alert_email=config.alert_email)
        common = {
            "ENDPOINT_NAME": serving.endpoint_name,
            "CAPTURE_BUCKET": data.capture.bucket_name,
            "CAPTURE_PREFIX": CAPTURE_PREFIX,
            "ARTIFACTS_BUCKET": data.artifacts.bucket_name,
            "BASELINE_KEY": BASELINE_KEY,
            "REPORTS_BUCKET": data.reports.bucket_name,
            "STATE_TABLE": data.table_name,
            "EVENT_BUS_NAME": self.alerts.bus_name,
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
        _output(self, "EventBusName", self.alerts.bus_name, "the driftloop event bus")
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


class RetrainingStack(cdk.Stack):
    """The retraining workflow, its trigger, the model registry and their alarms."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DriftloopConfig,
        stateful: StatefulStack,
        model: ModelStack,
        monitoring: MonitoringStack,
        bundle: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        code = bundle_code(bundle)  # one Code object per stack (the asset binds to it)
        self.add_stack_dependency(stateful)
        data, serving, alerts = (
            SharedData.imported(self, stateful.prefix),
            model.serving,
            monitoring.alerts,
        )
        version = config.sklearn_version
        bus = events.EventBus.from_event_bus_attributes(
            self,
            "AlertsBus",
            event_bus_arn=alerts.bus.event_bus_arn,
            event_bus_name=alerts.bus_name,
            event_bus_policy="",
        )
        self.workflow = RetrainWorkflow(
            self,
            "Workflow",
            code=code,
            sourcedir_path=str(build_sourcedir(vendor_py312=version.endswith("-py312"))),
            evaluate_path=str(script_asset_file("evaluate.py")),
            datasets=data.datasets,
            artifacts=data.artifacts,
            capture=data.capture,
            ground_truth=data.ground_truth,
            key=data.key,
            topic=alerts.topic,
            bus=bus,
            endpoint_name=serving.endpoint_name,
            model_role=serving.role,
            training_image=sklearn_image(self, version=version, image_scope="training"),
            inference_image=sklearn_image(self, version=version, image_scope="inference"),
            deployment_config=serving.deployment_config,
            capture_config=serving.capture_config,
            instance_type=config.instance_type,
            instance_count=config.instance_count,
            lookback_hours=config.lookback_hours,
            gate_metric=config.gate_metric,
            min_improvement=config.min_improvement,
            train_instance_type=config.train_instance_type,
            train_volume_gb=config.train_volume_gb,
            train_max_runtime_minutes=config.train_max_runtime_minutes,
            evaluate_instance_type=config.evaluate_instance_type,
            workflow_timeout_hours=config.workflow_timeout_hours,
            log_level=config.log_level,
            baseline_key=BASELINE_KEY,
        )
        self.trigger = RetrainTrigger(
            self,
            "Trigger",
            code=code,
            bus=bus,
            state_machine=self.workflow.state_machine,
            table_name=data.table_name,
            endpoint_name=serving.endpoint_name,
            cooldown_minutes=config.cooldown_minutes,
            schedule=config.retrain_schedule,
            log_level=config.log_level,
        )
        data.table.grant_read_write_data(self.trigger.function)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for id_alarm, (description, metric) in self.workflow.alarms().items():
            self.alarms[id_alarm] = alerts.notify(
                cloudwatch.Alarm(
                    self,
                    f"{id_alarm}Alarm",
                    alarm_description=description,
                    metric=metric,
                    threshold=1,
                    evaluation_periods=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
        self.alarms["TriggerErrors"] = alerts.notify(
            cloudwatch.Alarm(
                self,
                "TriggerErrorsAlarm",
                alarm_description="driftloop: the retrain-trigger Lambda failed",
                metric=self.trigger.function.metric_errors(period=cdk.Duration.minutes(5)),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
        _output(
            self,
            "StateMachineArn",
            self.workflow.state_machine.state_machine_arn,
            "the retraining state machine",
        )
        _output(
            self,
            "TriggerFunctionName",
            self.trigger.function.function_name,
            "the retrain-trigger Lambda",
        )
        _output(
            self,
            "ModelPackageGroupName",
            self.workflow.model_package_group_name,
            "the model registry group",
        )
        nag_retraining(self, stateful.prefix)


def nag_retraining(stack: RetrainingStack, prefix: str) -> None:
    workflow, trigger = stack.workflow, stack.trigger
    grant_actions = [
        "s3:GetObject*",
        "s3:GetBucket*",
        "s3:List*",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
    ]
    for fn in workflow.steps.values():
        nag.ack_lambda(fn)
        nag.ack_actions(
            fn.role,
            [
                a
                for a in [*grant_actions, "s3:Abort*", "s3:DeleteObject*"]
                if a in nag.GRANT_ACTIONS
            ],
        )
    nag.ack_lambda(trigger.handler)
    steps = workflow.steps
    datasets = export_name(prefix, "DatasetsBucketArn")
    artifacts = export_name(prefix, "ArtifactsBucketArn")
    nag.ack_objects(
        steps["PrepareData"].role,
        datasets,
        "training/",
        "prepare_data reads the current training set and writes training/{snapshot}/",
    )
    nag.ack_objects(
        steps["PrepareData"].role,
        export_name(prefix, "CaptureBucketArn"),
        "capture/",
        "prepare_data joins the captured requests of the lookback with their labels",
    )
    nag.ack_objects(
        steps["PrepareData"].role,
        export_name(prefix, "GroundTruthBucketArn"),
        "ground-truth/",
        "prepare_data reads the labels of the lookback",
    )
    for step in ("PrepareData", "CheckDeployment"):
        nag.ack_objects(
            steps[step].role,
            artifacts,
            "baselines/",
            "reads the serving baseline and the staged baselines/{model}/baseline.json",
        )
    nag.ack_objects(
        steps["DeployModel"].role,
        artifacts,
        "baselines/",
        "deploy_model stages the challenger's baselines/{model}/baseline.json",
    )
    nag.ack_objects(
        steps["DeployModel"].role,
        artifacts,
        "models/",
        "deploy_model reads baseline.json out of models/{training job}/output/model.tar.gz",
    )
    nag.ack_objects(
        steps["ReadEvaluation"].role,
        artifacts,
        "evaluations/",
        "read_evaluation reads evaluations/{run_id}/evaluation.json",
    )
    sagemaker_arn = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
    endpoint = workflow.endpoint_name
    prefix_ = naming.name_prefix(endpoint)
    nag.ack(
        steps["PrepareData"].role,
        f"AwsSolutions-IAM5[Resource::{sagemaker_arn}:endpoint-config/*]",
        "the champion's endpoint config has a CloudFormation- or workflow-generated name",
    )
    nag.ack(
        steps["PrepareData"].role,
        f"AwsSolutions-IAM5[Resource::{sagemaker_arn}:model/*]",
        "the champion model has a CloudFormation- or workflow-generated name",
    )
    for step, kinds in (
        ("DeployModel", ("model", "endpoint-config")),
        ("RegisterModel", ("training-job",)),
    ):
        for kind in kinds:
            nag.ack(
                steps[step].role,
                f"AwsSolutions-IAM5[Resource::{sagemaker_arn}:{kind}/{prefix_}*]",
                f"the workflow names every {kind} it creates {prefix_}<kind>-<time>-<run>",
            )
    group = workflow.model_package_group_name
    nag.ack(
        steps["RegisterModel"].role,
        f"AwsSolutions-IAM5[Resource::{sagemaker_arn}:model-package/{group}/*]",
        "each run adds one version to the driftloop model package group",
    )
    # The SageMaker job role
    role = workflow.job_role
    nag.ack_actions(
        role,
        [
            "s3:GetObject*",
            "s3:GetBucket*",
            "s3:List*",
            "s3:Abort*",
            "s3:DeleteObject*",
            "kms:GenerateDataKey*",
            "kms:ReEncrypt*",
        ],
    )
    nag.ack_objects(role, datasets, "training/", "the training job reads the snapshot's channels")
    nag.ack_objects(
        role,
        artifacts,
        "models/",
        "training writes models/{job}/output/; evaluation reads champion and challenger",
    )
    nag.ack_objects(role, artifacts, "evaluations/", "the evaluation job writes evaluation.json")
    nag.ack(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "cloudwatch:PutMetricData has no resource-level permissions; conditioned on the "
        "/aws/sagemaker/* namespaces",
    )
    for kind in ("Training", "Processing"):
        nag.ack(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
            f"<AWS::AccountId>:log-group:/aws/sagemaker/{kind}Jobs:*]",
            f"SageMaker writes job logs to /aws/sagemaker/{kind}Jobs/<job name>",
        )
    nag.ack(
        role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-"
        "<AWS::AccountId>-<AWS::Region>/*]",
        "CDK asset grant: the jobs download sourcedir.tar.gz and evaluate.py from the "
        "bootstrap asset bucket",
    )
    # The state machine role (generated by the CDK's task integrations)
    machine_role = workflow.state_machine.role
    nag.ack(
        machine_role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray tracing and CloudWatch Logs delivery (logs:*LogDelivery*, PutResourcePolicy) "
        "support no resource-level permissions; sagemaker:ListTags on * is added by the CDK's "
        "training-job integration",
    )
    nag.ack(
        machine_role,
        f"AwsSolutions-IAM5[Resource::{sagemaker_arn}:processing-job/{prefix_}*]",
        f"the workflow names every processing job it starts {prefix_}eval-<time>-<run>",
    )
    nag.ack(
        machine_role,
        f"AwsSolutions-IAM5[Resource::{sagemaker_arn}:training-job/*]",
        "generated by the CDK's .sync training-job integration (describe/stop the job it "
        "started, whose name comes from the state document)",
    )
    nag.ack_actions(machine_role, ["kms:GenerateDataKey*"])
    nag.ack(
        trigger.dead_letter_queue,
        "AwsSolutions-SQS3",
        "this queue is itself the dead-letter queue of the retrain-trigger rule targets",
    )
    nag.ack_actions(trigger.handler.role, ["kms:GenerateDataKey*", "kms:ReEncrypt*"])
    for name, fn in workflow.steps.items():
        logical = stack.get_logical_id(fn.function.node.default_child)  # type: ignore[arg-type]
        nag.ack(
            machine_role,
            f"AwsSolutions-IAM5[Resource::<{logical}.Arn>:*]",
            f"generated by the CDK's LambdaInvoke for {name}: the function and its "
            "versions/aliases (function ARN + ':*')",
        )


class DashboardStack(cdk.Stack):
    """The CloudWatch dashboard over every other stack (last, so it can see them all)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        model: ModelStack,
        monitoring: MonitoringStack,
        retraining: RetrainingStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        functions: dict[str, lambda_.IFunction] = {
            "drift-check": monitoring.drift_check.function,
            "quality-check": monitoring.quality_check.function,
            "retrain-trigger": retraining.trigger.function,
        }
        for name, step in retraining.workflow.steps.items():
            functions[name] = step.function
        self.view = LoopDashboard(
            self,
            "Loop",
            endpoint_name=model.serving.endpoint_name,
            variant_name=model.serving.variant_name,
            functions=functions,
            state_machine=retraining.workflow.state_machine,
        )
        _output(self, "DashboardName", self.view.dashboard.dashboard_name, "the dashboard")


def stack_env(config: DriftloopConfig) -> cdk.Environment | None:
    if config.env_agnostic:
        return None
    return cdk.Environment(account=config.account, region=config.region)


def build_app(app: cdk.App, config: DriftloopConfig) -> dict[str, cdk.Stack]:
    """Create every driftloop stack in `app` (also used by the tests)."""
    env = stack_env(config)
    prefix = config.stack_prefix
    bundle = str(build_lambda_bundle())
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
        bundle=bundle,
        env=env,
        description="driftloop: scheduled drift and quality checks, alarms",
    )
    retraining = RetrainingStack(
        app,
        f"{prefix}Retraining",
        config=config,
        stateful=stateful,
        model=model,
        monitoring=monitoring,
        bundle=bundle,
        env=env,
        description="driftloop: retraining workflow, trigger and model registry",
    )
    dashboard = DashboardStack(
        app,
        f"{prefix}Dashboard",
        model=model,
        monitoring=monitoring,
        retraining=retraining,
        env=env,
        description="driftloop: the CloudWatch dashboard",
    )
    stacks: dict[str, cdk.Stack] = {
        "stateful": stateful,
        "model": model,
        "monitoring": monitoring,
        "retraining": retraining,
        "dashboard": dashboard,
    }
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "driftloop")
    nag.add_checks(app)
    return stacks
