"""The retraining workflow: Step Functions from a fresh data snapshot to a guarded deploy.

States, in `lambdas.retrain_steps.RETRAIN_STEPS` order:

    PrepareData -> Train (.sync training job) -> Evaluate (.sync processing job running
    training/evaluate.py) -> ReadEvaluation -> Gate -> RegisterModel -> DeployModel ->
    WaitForDeployment -> CheckDeployment (loops back to the wait while the blue/green
    update runs) -> Notify

The Gate is where the champion/challenger decision branches: an approved challenger is
registered (Approved) and deployed; a rejected one is registered too (`RegisterRejected`
runs the same register_model handler, so every run is in the model registry) and the
workflow goes straight to Notify. Every task retries throttling and service errors and
catches the rest into `NotifyFailure` (SNS) -> `Failed`; every task has a timeout, and
so does the machine. The Lambda steps return the whole state document, which becomes
the next state's input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from driftloop import naming
from infra.constructs.functions import SERVICE_STEPS, SERVICE_TRIGGER, DriftloopFunction
from infra.constructs.sagemaker_role import grant_sagemaker_telemetry
from infra.constructs.storage import CAPTURE_PREFIX, GROUND_TRUTH_PREFIX

# Where SageMaker puts a processing job's inputs and takes its outputs.
PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_OUTPUT = "/opt/ml/processing/output/evaluation"
DEPLOY_POLL = cdk.Duration.minutes(5)
LAMBDA_TASK_TIMEOUT = cdk.Duration.minutes(15)
NOTIFY_TIMEOUT = cdk.Duration.minutes(1)

LAMBDA_RETRY_ERRORS = ["Lambda.TooManyRequestsException"]
SAGEMAKER_RETRY_ERRORS = ["SageMaker.AmazonSageMakerException", "SageMaker.ThrottlingException"]
NOTIFY_RETRY_ERRORS = [
    "SNS.AmazonSNSException",
    "SNS.ThrottledException",
    "EventBridge.AmazonEventBridgeException",
    "EventBridge.EventBridgeException",
]
EVENT_SOURCE = "driftloop"
TRIGGER_DETAIL_TYPES = ["Drift Detected", "Quality Degraded"]


class ScopedLocation(tasks.S3Location):
    """An S3 location for the training task that grants nothing by itself.

    The CDK's `S3Location.from_json_expression` cannot know the bucket, so it grants
    s3:GetObject/ListBucket on `*`; `from_bucket` renders an https:// URL. The channels
    always live under `training/` in the datasets bucket and the output under `models/`
    in the artifacts bucket, and the workflow grants the job role exactly those prefixes.
    `uri` is a JSONPath into the state document (`$.snapshot.train_uri`) or an s3:// URI.
    """

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def bind(
        self,
        task: tasks.ISageMakerTask,
        *,
        for_reading: bool | None = None,
        for_writing: bool | None = None,
    ) -> tasks.S3LocationConfig:
        uri = sfn.JsonPath.string_at(self.uri) if self.uri.startswith("$.") else self.uri
        return tasks.S3LocationConfig(uri=uri)


def _hyperparameter(value: str) -> str:
    """Script-mode hyperparameters are JSON-encoded, as the SageMaker SDK writes them."""
    return json.dumps(value)


class RetrainWorkflow(Construct):
    """The state machine, its Lambda steps, the SageMaker job role and the model registry.

    Public attributes: `state_machine`, `steps` (state name -> DriftloopFunction),
    `job_role`, `model_package_group`, `model_package_group_name`, `sourcedir`,
    `evaluate_script`, `log_group`, `definition` (the chain, for the diagram).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        sourcedir_path: str,
        evaluate_path: str,
        datasets: s3.IBucket,
        artifacts: s3.IBucket,
        capture: s3.IBucket,
        ground_truth: s3.IBucket,
        key: kms.IKey,
        topic: sns.ITopic,
        bus: events.IEventBus,
        endpoint_name: str,
        model_role: iam.IRole,
        training_image: str,
        inference_image: str,
        deployment_config: Mapping[str, Any],
        capture_config: Mapping[str, Any],
        instance_type: str,
        instance_count: int,
        lookback_hours: int,
        gate_metric: str,
        min_improvement: float,
        train_instance_type: str,
        train_volume_gb: int,
        train_max_runtime_minutes: int,
        evaluate_instance_type: str,
        workflow_timeout_hours: int,
        log_level: str,
        baseline_key: str,
    ) -> None:
        super().__init__(scope, id_)
        stack = cdk.Stack.of(self)
        self.endpoint_name = endpoint_name
        # Every SageMaker resource the workflow creates starts with this prefix
        # (driftloop.naming.resource_name), which is what the IAM below is scoped to.
        name_prefix = naming.name_prefix(endpoint_name)

        def sm_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        self.model_package_group_name = f"{endpoint_name}-models"
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=self.model_package_group_name,
            model_package_group_description="driftloop: every retraining run, approved or rejected",
        )

        # -- the code the SageMaker jobs run
        self.sourcedir = s3_assets.Asset(self, "SourceDir", path=sourcedir_path)
        self.evaluate_script = s3_assets.Asset(self, "EvaluateScript", path=evaluate_path)
        evaluate_key = self.evaluate_script.s3_object_key
        if cdk.Token.is_unresolved(evaluate_key):  # pragma: no cover - synthesizer-specific
            raise ValueError("the evaluate.py asset needs a synthesizer with literal object keys")

        # -- the role the training and processing jobs run as
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="driftloop retraining: SageMaker training and evaluation jobs",
        )
        datasets.grant_read(self.job_role, "training/*")
        artifacts.grant_read(self.job_role, "models/*")
        artifacts.grant_put(self.job_role, "models/*")
        artifacts.grant_put(self.job_role, "evaluations/*")
        key.grant_encrypt_decrypt(self.job_role)
        # The jobs' volumes and outputs are encrypted with the data key: SageMaker creates
        # grants on it for the job's instances.
        key.grant(self.job_role, "kms:CreateGrant", "kms:DescribeKey")
        self.sourcedir.grant_read(self.job_role)
        self.evaluate_script.grant_read(self.job_role)
        grant_sagemaker_telemetry(
            self.job_role,
            stack,
            [f"/aws/sagemaker/{kind}Jobs:*" for kind in ("Training", "Processing")],
        )

        # -- the Lambda steps
        def step(
            state: str, handler: str, description: str, env: dict[str, str]
        ) -> DriftloopFunction:
            return DriftloopFunction(
                self,
                f"{state}Function",
                code=code,
                handler=f"lambdas.retrain_steps.{handler}",
                service=SERVICE_STEPS,
                description=f"driftloop retraining: {description}",
                environment=env,
                log_level=log_level,
                memory_mb=1024 if state == "PrepareData" else 512,
                timeout=LAMBDA_TASK_TIMEOUT if state == "PrepareData" else cdk.Duration.minutes(5),
            )

        prepare = step(
            "PrepareData",
            "prepare_data",
            "snapshot training data, name the jobs, read the champion",
            {
                "DATASETS_BUCKET": datasets.bucket_name,
                "CAPTURE_BUCKET": capture.bucket_name,
                "CAPTURE_PREFIX": CAPTURE_PREFIX,
                "GROUND_TRUTH_BUCKET": ground_truth.bucket_name,
                "GROUND_TRUTH_PREFIX": GROUND_TRUTH_PREFIX,
                "ARTIFACTS_BUCKET": artifacts.bucket_name,
                "BASELINE_KEY": baseline_key,
                "ENDPOINT_NAME": endpoint_name,
                "LOOKBACK_HOURS": str(lookback_hours),
            },
        )
        read_eval = step(
            "ReadEvaluation",
            "read_evaluation",
            "read evaluation.json and decide champion vs challenger",
            {
                "ARTIFACTS_BUCKET": artifacts.bucket_name,
                "MIN_IMPROVEMENT": repr(min_improvement),
                "GATE_METRIC": gate_metric,
            },
        )
        register = step(
            "RegisterModel",
            "register_model",
            "record the challenger in the model registry",
            {"MODEL_PACKAGE_GROUP": self.model_package_group_name, "IMAGE_URI": inference_image},
        )
        deploy = step(
            "DeployModel",
            "deploy_model",
            "blue/green UpdateEndpoint to the challenger",
            {
                "ENDPOINT_NAME": endpoint_name,
                "SAGEMAKER_ROLE_ARN": model_role.role_arn,
                "IMAGE_URI": inference_image,
                "ARTIFACTS_BUCKET": artifacts.bucket_name,
                "BASELINE_KEY": baseline_key,
                "DEPLOYMENT_CONFIG": stack.to_json_string(dict(deployment_config)),
                "INSTANCE_TYPE": instance_type,
                "INSTANCE_COUNT": str(instance_count),
                "CAPTURE_CONFIG": stack.to_json_string(dict(capture_config)),
            },
        )
        check = step(
            "CheckDeployment",
            "check_deployment",
            "follow the blue/green update; promote the baseline when it serves",
            {"ENDPOINT_NAME": endpoint_name},
        )
        self.steps = {
            "PrepareData": prepare,
            "ReadEvaluation": read_eval,
            "RegisterModel": register,
            "DeployModel": deploy,
            "CheckDeployment": check,
        }

        # prepare_data: reads the current training set and the labelled capture, writes a
        # snapshot, reads the serving baseline and describes the endpoint (the champion).
        datasets.grant_read_write(prepare.role, "training/*")
        capture.grant_read(prepare.role, f"{CAPTURE_PREFIX}/*")
        ground_truth.grant_read(prepare.role, f"{GROUND_TRUTH_PREFIX}/*")
        artifacts.grant_read(prepare.role, "baselines/*")
        prepare.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeModel",
                ],
                resources=[
                    sm_arn("endpoint", endpoint_name),
                    sm_arn("endpoint-config", "*"),
                    sm_arn("model", "*"),
                ],
            )
        )
        # read_evaluation: the processing job's evaluation.json
        artifacts.grant_read(read_eval.role, "evaluations/*")
        # register_model: a model package per run (and the group if it was deleted)
        register.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:CreateModelPackageGroup",
                ],
                resources=[
                    sm_arn("model-package-group", self.model_package_group_name),
                    sm_arn("model-package", f"{self.model_package_group_name}/*"),
                ],
            )
        )
        register.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeTrainingJob"],
                resources=[sm_arn("training-job", f"{name_prefix}*")],
            )
        )
        # deploy_model: model + endpoint config (with KMS-encrypted capture) + update
        artifacts.grant_read(deploy.role, "models/*")
        artifacts.grant_put(deploy.role, "baselines/*")
        key.grant(deploy.role, "kms:CreateGrant", "kms:DescribeKey")
        model_role.grant_pass_role(deploy.role)
        deploy.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeModel",
                ],
                resources=[
                    sm_arn("model", f"{name_prefix}*"),
                    sm_arn("endpoint-config", f"{name_prefix}*"),
                ],
            )
        )
        deploy.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:CreateEndpoint",
                ],
                resources=[
                    sm_arn("endpoint", endpoint_name),
                    sm_arn("endpoint-config", f"{name_prefix}*"),
                ],
            )
        )
        # check_deployment: the endpoint's status; promotes the baseline and the snapshot
        check.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeEndpoint"],
                resources=[sm_arn("endpoint", endpoint_name)],
            )
        )
        artifacts.grant_read(check.role, "baselines/*")
        artifacts.grant_put(check.role, baseline_key)
        datasets.grant_put(check.role, "training/current.json")

        # -- the states
        failure = tasks.SnsPublish(
            self,
            "NotifyFailure",
            topic=topic,
            subject=sfn.JsonPath.format(
                "driftloop {}: retraining failed", sfn.JsonPath.string_at("$$.Execution.Name")
            ),
            message=sfn.TaskInput.from_object(
                {
                    "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "cause": sfn.JsonPath.string_at("$.error.Cause"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(NOTIFY_TIMEOUT),
        )
        failed = sfn.Fail(
            self,
            "Failed",
            error="RetrainingFailed",
            cause="a retraining step failed; see NotifyFailure",
        )
        failure.add_retry(
            errors=NOTIFY_RETRY_ERRORS,
            max_attempts=3,
            backoff_rate=2,
            interval=cdk.Duration.seconds(2),
        )
        failure.add_catch(failed, result_path="$.notify_error")
        failure.next(failed)

        def guard(task: Any, errors: Sequence[str], *, max_attempts: int = 4) -> Any:
            task.add_retry(
                errors=list(errors),
                interval=cdk.Duration.seconds(5),
                max_attempts=max_attempts,
                backoff_rate=2,
                jitter_strategy=sfn.JitterType.FULL,
            )
            task.add_catch(failure, errors=["States.ALL"], result_path="$.error")
            return task

        def invoke(state: str, fn: DriftloopFunction) -> tasks.LambdaInvoke:
            return guard(
                tasks.LambdaInvoke(
                    self,
                    state,
                    lambda_function=fn.function,
                    payload_response_only=True,  # the handler returns the whole document
                    retry_on_service_exceptions=True,
                    task_timeout=sfn.Timeout.duration(LAMBDA_TASK_TIMEOUT),
                ),
                LAMBDA_RETRY_ERRORS,
            )

        train = guard(
            tasks.SageMakerCreateTrainingJob(
                self,
                "Train",
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                training_job_name=sfn.JsonPath.string_at("$.training_job_name"),
                role=self.job_role,
                algorithm_specification=tasks.AlgorithmSpecification(
                    training_image=tasks.DockerImage.from_registry(training_image),
                    training_input_mode=tasks.InputMode.FILE,
                ),
                hyperparameters={
                    "sagemaker_program": _hyperparameter("train.py"),
                    "sagemaker_submit_directory": _hyperparameter(self.sourcedir.s3_object_url),
                    "sagemaker_region": _hyperparameter(cdk.Aws.REGION),
                    "sagemaker_container_log_level": "20",
                },
                input_data_config=[
                    self._channel("train", "$.snapshot.train_uri"),
                    self._channel("validation", "$.snapshot.validation_uri"),
                    # The traffic the new model is to serve: train.py profiles it for the
                    # drift check's baseline (a copy of train.csv when there is too little).
                    self._channel("baseline", "$.snapshot.baseline_uri"),
                ],
                output_data_config=tasks.OutputDataConfig(
                    s3_output_location=ScopedLocation(artifacts.s3_url_for_object("models/")),
                    encryption_key=key,
                ),
                resource_config=tasks.ResourceConfig(
                    instance_count=1,
                    instance_type=ec2.InstanceType(train_instance_type.removeprefix("ml.")),
                    volume_size=cdk.Size.gibibytes(train_volume_gb),
                    volume_encryption_key=key,
                ),
                stopping_condition=tasks.StoppingCondition(
                    max_runtime=cdk.Duration.minutes(train_max_runtime_minutes)
                ),
                result_selector={
                    "name.$": "$.TrainingJobName",
                    "status.$": "$.TrainingJobStatus",
                    "model_data_url.$": "$.ModelArtifacts.S3ModelArtifacts",
                },
                result_path="$.training_job",
                task_timeout=sfn.Timeout.duration(
                    cdk.Duration.minutes(train_max_runtime_minutes + 30)
                ),
            ),
            SAGEMAKER_RETRY_ERRORS,
            max_attempts=3,
        )

        evaluate_timeout = cdk.Duration.hours(1)
        evaluate = guard(
            sfn.CustomState(
                self,
                "Evaluate",
                state_json={
                    "Type": "Task",
                    "Resource": (
                        f"arn:{cdk.Aws.PARTITION}:states:::sagemaker:createProcessingJob.sync"
                    ),
                    "Parameters": {
                        "ProcessingJobName.$": "$.processing_job_name",
                        "RoleArn": self.job_role.role_arn,
                        "AppSpecification": {
                            "ImageUri": training_image,
                            "ContainerEntrypoint": [
                                "python3",
                                f"{PROCESSING_INPUT}/code/{evaluate_key}",
                            ],
                            "ContainerArguments": ["--metric", gate_metric],
                        },
                        "ProcessingInputs": [
                            self._processing_input("code", self.evaluate_script.s3_object_url),
                            self._processing_input("champion", None, "$.champion.model_data_url"),
                            self._processing_input(
                                "challenger", None, "$.challenger_model_data_url"
                            ),
                            self._processing_input("holdout", None, "$.snapshot.holdout_uri"),
                        ],
                        "ProcessingOutputConfig": {
                            "KmsKeyId": key.key_arn,
                            "Outputs": [
                                {
                                    "OutputName": "evaluation",
                                    "S3Output": {
                                        "S3Uri.$": "$.evaluation_uri",
                                        "LocalPath": PROCESSING_OUTPUT,
                                        "S3UploadMode": "EndOfJob",
                                    },
                                }
                            ],
                        },
                        "ProcessingResources": {
                            "ClusterConfig": {
                                "InstanceCount": 1,
                                "InstanceType": evaluate_instance_type,
                                "VolumeSizeInGB": 30,
                                "VolumeKmsKeyId": key.key_arn,
                            }
                        },
                        "StoppingCondition": {
                            "MaxRuntimeInSeconds": int(evaluate_timeout.to_seconds())
                        },
                    },
                    "ResultSelector": {
                        "name.$": "$.ProcessingJobName",
                        "status.$": "$.ProcessingJobStatus",
                    },
                    "ResultPath": "$.processing_job",
                    "TimeoutSeconds": int(evaluate_timeout.to_seconds()) + 1800,
                },
            ),
            SAGEMAKER_RETRY_ERRORS,
            max_attempts=3,
        )

        notify_topic = tasks.SnsPublish(
            self,
            "NotifyTopic",
            topic=topic,
            subject=sfn.JsonPath.string_at("$.notification.subject"),
            message=sfn.TaskInput.from_json_path_at("$.notification.message"),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(NOTIFY_TIMEOUT),
        )
        publish_event = tasks.EventBridgePutEvents(
            self,
            "PublishFinished",
            entries=[
                tasks.EventBridgePutEventsEntry(
                    event_bus=bus,
                    source=EVENT_SOURCE,
                    detail_type="Retraining Finished",
                    detail=sfn.TaskInput.from_json_path_at("$.notification.detail"),
                )
            ],
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(NOTIFY_TIMEOUT),
        )
        for task in (notify_topic, publish_event):
            task.add_retry(
                errors=NOTIFY_RETRY_ERRORS,
                max_attempts=4,
                backoff_rate=2,
                interval=cdk.Duration.seconds(2),
            )
        notify = sfn.Parallel(
            self,
            "Notify",
            comment="the run's summary to the alerts topic and the driftloop bus",
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.branch(notify_topic)
        notify.branch(publish_event)
        notify.add_catch(failure, errors=["States.ALL"], result_path="$.error")

        wait = sfn.Wait(self, "WaitForDeployment", time=sfn.WaitTime.duration(DEPLOY_POLL))
        check_state = invoke("CheckDeployment", check)
        deployment_loop = wait.next(check_state).next(
            sfn.Choice(self, "DeploymentFinished")
            .when(
                sfn.Condition.string_equals("$.deployment.status", "in_progress"),
                wait,
            )
            .otherwise(notify)
        )
        register_rejected = guard(
            tasks.LambdaInvoke(
                self,
                "RegisterRejected",
                lambda_function=register.function,
                payload_response_only=True,
                retry_on_service_exceptions=True,
                task_timeout=sfn.Timeout.duration(LAMBDA_TASK_TIMEOUT),
                comment="the gate kept the champion: record the challenger as Rejected",
            ),
            LAMBDA_RETRY_ERRORS,
        )
        gate = (
            sfn.Choice(self, "Gate", comment="deploy only if the gate prefers the challenger")
            .when(
                sfn.Condition.boolean_equals("$.decision.deploy", True),
                invoke("RegisterModel", register)
                .next(invoke("DeployModel", deploy))
                .next(deployment_loop),
            )
            .otherwise(register_rejected.next(notify))
        )
        self.definition = (
            invoke("PrepareData", prepare)
            .next(train)
            .next(evaluate)
            .next(invoke("ReadEvaluation", read_eval))
            .next(gate)
        )

        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="driftloop retraining: snapshot, train, evaluate, gate, register, deploy",
            definition_body=sfn.DefinitionBody.from_chainable(self.definition),
            timeout=cdk.Duration.hours(workflow_timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
        )
        # The processing job is a CustomState: its permissions are not generated.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                ],
                resources=[sm_arn("processing-job", f"{name_prefix}*")],
            )
        )
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(
                        service="events",
                        resource="rule",
                        resource_name="StepFunctionsGetEventsForSageMakerProcessingJobsRule",
                    )
                ],
            )
        )
        self.job_role.grant_pass_role(self.state_machine.role)
        # Creating a job with VolumeKmsKeyId / KmsKeyId needs grants on the key for the caller.
        key.grant(self.state_machine.role, "kms:CreateGrant", "kms:DescribeKey")

    @staticmethod
    def _channel(name: str, path: str) -> tasks.Channel:
        return tasks.Channel(
            channel_name=name,
            content_type="text/csv",
            data_source=tasks.DataSource(
                s3_data_source=tasks.S3DataSource(
                    s3_location=ScopedLocation(path),
                    s3_data_type=tasks.S3DataType.S3_PREFIX,
                    s3_data_distribution_type=tasks.S3DataDistributionType.FULLY_REPLICATED,
                )
            ),
        )

    @staticmethod
    def _processing_input(name: str, uri: str | None, path: str | None = None) -> dict[str, Any]:
        s3_input: dict[str, Any] = {
            "LocalPath": f"{PROCESSING_INPUT}/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        }
        if path is not None:
            s3_input["S3Uri.$"] = path
        else:
            s3_input["S3Uri"] = uri
        return {"InputName": name, "S3Input": s3_input}

    def alarms(self) -> dict[str, tuple[str, cloudwatch.IMetric]]:
        """What to alarm on: failed or timed-out executions, and rolled-back deployments."""
        period = cdk.Duration.minutes(5)
        return {
            "RetrainingFailed": (
                "driftloop: a retraining execution failed",
                self.state_machine.metric_failed(period=period, statistic="Sum"),
            ),
            "RetrainingTimedOut": (
                "driftloop: a retraining execution timed out",
                self.state_machine.metric_timed_out(period=period, statistic="Sum"),
            ),
            "DeploymentRolledBack": (
                "driftloop: a retrained model was rolled back (or its deployment failed)",
                cloudwatch.Metric(
                    namespace="driftloop",
                    metric_name="DeploymentRolledBack",
                    dimensions_map={"Endpoint": self.endpoint_name, "service": SERVICE_STEPS},
                    statistic="Maximum",
                    period=period,
                ),
            ),
        }


class RetrainTrigger(Construct):
    """The retrain-trigger Lambda on the driftloop bus (and an optional schedule).

    It takes the cooldown lock in the state table and starts the state machine; a failed
    delivery lands in the dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        bus: events.IEventBus,
        state_machine: sfn.IStateMachine,
        table_name: str,
        endpoint_name: str,
        cooldown_minutes: int,
        schedule: str | None,
        log_level: str,
    ) -> None:
        super().__init__(scope, id_)
        # Its own dead-letter queue: the monitoring stack's queue would need a policy naming
        # this stack's rules, a dependency cycle between the stacks.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.handler = DriftloopFunction(
            self,
            "Handler",
            code=code,
            handler="lambdas.retrain_trigger.handler",
            service=SERVICE_TRIGGER,
            description="driftloop: start retraining on drift or quality events (with cooldown)",
            environment={
                "STATE_TABLE": table_name,
                "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                "COOLDOWN_MINUTES": str(cooldown_minutes),
                "ENDPOINT_NAME": endpoint_name,
            },
            log_level=log_level,
            timeout=cdk.Duration.minutes(1),
        )
        self.function = self.handler.function
        target = targets.LambdaFunction(
            self.function,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=4,
            max_event_age=cdk.Duration.hours(6),
        )
        self.rule = events.Rule(
            self,
            "OnDriftOrQuality",
            description="driftloop: drift or quality events start a retraining run",
            event_bus=bus,
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE], detail_type=TRIGGER_DETAIL_TYPES
            ),
        )
        self.rule.add_target(target)
        self.schedule_rule: events.Rule | None = None
        if schedule:
            self.schedule_rule = events.Rule(
                self,
                "Schedule",
                description="driftloop: scheduled retraining (cooldown still applies)",
                schedule=events.Schedule.expression(schedule),
            )
            self.schedule_rule.add_target(target)
        state_machine.grant_start_execution(self.function)
        state_machine.grant(self.function, "states:ListExecutions")
