"""The retraining stack: the state machine (order, retries, catches, timeouts, the .sync
SageMaker integrations), its Lambda steps' contract, the trigger rule, IAM and alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.diagram import definition_from_template
from lambdas.retrain_steps import LAMBDA_STEPS, RETRAIN_STEPS
from tests.infra.conftest import Synth, only, resources

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

HELPER_STATES = {"RegisterRejected", "DeploymentFinished", "NotifyFailure", "Failed"}


@pytest.fixture(scope="module")
def definition(synth: Synth) -> dict[str, Any]:
    return definition_from_template(synth.templates["retraining"])


def _walk(definition: dict[str, Any], *, deploy: bool) -> list[str]:
    """The states one execution visits: the gate's branch, the wait loop taken once."""
    states = definition["States"]
    path, name, waited = [], definition["StartAt"], False
    while True:
        path.append(name)
        state = states[name]
        if state["Type"] == "Choice":
            rule = state["Choices"][0]
            if name == "Gate":
                name = rule["Next"] if deploy else state["Default"]
            else:  # DeploymentFinished: still in progress once, then done
                name = state["Default"] if waited else rule["Next"]
                waited = True
            continue
        if state.get("End"):
            return path
        name = state["Next"]


def test_states_are_the_retrain_steps_plus_helpers(definition: dict[str, Any]) -> None:
    assert set(definition["States"]) == set(RETRAIN_STEPS) | HELPER_STATES


def test_deploy_path_follows_retrain_steps_order(definition: dict[str, Any]) -> None:
    # Given an approved challenger whose deployment needs one more poll
    path = _walk(definition, deploy=True)
    # Then the execution visits RETRAIN_STEPS in order (the wait loop adds a second pass)
    first_visits = [s for i, s in enumerate(path) if s in RETRAIN_STEPS and s not in path[:i]]
    assert first_visits == list(RETRAIN_STEPS)
    assert path.count("CheckDeployment") == 2


def test_rejected_path_registers_then_notifies(definition: dict[str, Any]) -> None:
    # Given a rejected challenger
    path = _walk(definition, deploy=False)
    # Then it is still registered (same handler as RegisterModel) and nothing is deployed
    assert path == [*RETRAIN_STEPS[:5], "RegisterRejected", "Notify"]
    states = definition["States"]
    assert states["RegisterRejected"]["Resource"] == states["RegisterModel"]["Resource"]
    assert states["Gate"]["Choices"][0] == {
        "Variable": "$.decision.deploy",
        "BooleanEquals": True,
        "Next": "RegisterModel",
    }


def test_lambda_states_run_the_contract_handlers(synth: Synth, definition: dict[str, Any]) -> None:
    template = synth.templates["retraining"]
    functions = resources(template, "AWS::Lambda::Function")
    for state, handler in LAMBDA_STEPS.items():
        task = definition["States"][state]
        # The function is invoked directly with the whole document, and what it returns
        # (the whole document again) becomes the next state's input
        logical = task["Resource"].strip("${}").split(".")[0]
        assert functions[logical]["Properties"]["Handler"] == f"lambdas.retrain_steps.{handler}"
        assert not {"Parameters", "ResultPath", "OutputPath", "InputPath"} & set(task)


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {n: s for n, s in definition["States"].items() if s["Type"] == "Task"}
    for state in definition["States"].values():
        for branch in state.get("Branches", []):
            out.update({n: s for n, s in branch["States"].items() if s["Type"] == "Task"})
    return out


def test_every_task_retries_catches_and_times_out(definition: dict[str, Any]) -> None:
    tasks = _tasks(definition)
    assert len(tasks) == 11
    for name, task in tasks.items():
        # Then every task has a timeout and retries throttling/service errors
        assert 0 < task["TimeoutSeconds"] <= 4 * 3600, name
        retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
        assert retried, name
        assert "States.ALL" not in retried, name  # a failed job is not blindly rerun
        if task["Resource"].startswith("${Workflow") or task["Resource"].startswith("${Trigger"):
            assert {"Lambda.TooManyRequestsException", "Lambda.ServiceException"} <= retried
        if "sagemaker" in task["Resource"]:
            assert "SageMaker.AmazonSageMakerException" in retried
    # And every top-level task but the failure notice catches everything into it
    top = {n: s for n, s in definition["States"].items() if s["Type"] in ("Task", "Parallel")}
    for name, state in top.items():
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert catch["Next"] == ("Failed" if name == "NotifyFailure" else "NotifyFailure"), name
    assert definition["States"]["NotifyFailure"]["Next"] == "Failed"
    assert definition["States"]["Failed"]["Type"] == "Fail"


def test_train_is_a_sync_training_job_in_script_mode(definition: dict[str, Any]) -> None:
    train = definition["States"]["Train"]
    assert train["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
    params = train["Parameters"]
    assert params["TrainingJobName.$"] == "$.training_job_name"
    hyper = params["HyperParameters"]
    assert json.loads(hyper["sagemaker_program"]) == "train.py"
    submit = json.loads(hyper["sagemaker_submit_directory"])
    # (the asset key keeps only the last suffix; the toolkit untars whatever the name)
    assert submit.startswith("s3://cdk-") and submit.endswith(".gz")
    channels = {c["ChannelName"]: c for c in params["InputDataConfig"]}
    assert channels["train"]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.snapshot.train_uri"
    assert (
        channels["validation"]["DataSource"]["S3DataSource"]["S3Uri.$"]
        == "$.snapshot.validation_uri"
    )
    # the baseline channel: the recent traffic train.py profiles for the drift check
    assert (
        channels["baseline"]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.snapshot.baseline_uri"
    )
    assert set(channels) == {"train", "validation", "baseline"}
    assert (
        params["OutputDataConfig"]["S3OutputPath"]
        == "s3://${import:Driftloop-ArtifactsBucketName}/models/"
    )
    assert (
        params["AlgorithmSpecification"]["TrainingImage"]
        == "${map:SklearnImageUris:${AWS::Region}:training}"
    )
    assert params["ResourceConfig"]["VolumeKmsKeyId"] == "${import:Driftloop-DataKeyArn}"
    assert params["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert train["ResultPath"] == "$.training_job"


def test_evaluate_is_a_sync_processing_job_running_evaluate_py(definition: dict[str, Any]) -> None:
    evaluate = definition["States"]["Evaluate"]
    assert evaluate["Resource"].endswith(":states:::sagemaker:createProcessingJob.sync")
    params = evaluate["Parameters"]
    inputs = {i["InputName"]: i["S3Input"] for i in params["ProcessingInputs"]}
    # Then the entry point is the evaluate.py asset, downloaded under its object key
    code_key = inputs["code"]["S3Uri"].rsplit("/", 1)[1]
    assert code_key.endswith(".py")
    entry = params["AppSpecification"]["ContainerEntrypoint"]
    assert entry == ["python3", f"/opt/ml/processing/input/code/{code_key}"]
    assert params["AppSpecification"]["ContainerArguments"] == ["--metric", "auc"]
    # And champion, challenger and holdout come from the state document
    assert inputs["champion"]["S3Uri.$"] == "$.champion.model_data_url"
    assert inputs["challenger"]["S3Uri.$"] == "$.challenger_model_data_url"
    assert inputs["holdout"]["S3Uri.$"] == "$.snapshot.holdout_uri"
    assert {i["LocalPath"] for i in inputs.values()} == {
        f"/opt/ml/processing/input/{n}" for n in ("code", "champion", "challenger", "holdout")
    }
    (output,) = params["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri.$"] == "$.evaluation_uri"
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/evaluation"
    assert params["ProcessingJobName.$"] == "$.processing_job_name"


def test_notify_publishes_to_sns_and_the_bus(definition: dict[str, Any]) -> None:
    notify = definition["States"]["Notify"]
    assert notify["Type"] == "Parallel" and notify["End"] is True
    assert notify["ResultPath"] is None
    topic, event = (b["States"][b["StartAt"]] for b in notify["Branches"])
    assert topic["Resource"].endswith(":states:::sns:publish")
    assert topic["Parameters"]["Subject.$"] == "$.notification.subject"
    assert event["Resource"].endswith(":states:::events:putEvents")
    (entry,) = event["Parameters"]["Entries"]
    assert entry["Source"] == "driftloop" and entry["DetailType"] == "Retraining Finished"
    assert entry["Detail.$"] == "$.notification.detail"


def test_wait_loop(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["WaitForDeployment"] == {
        "Type": "Wait",
        "Seconds": 300,
        "Next": "CheckDeployment",
    }
    assert states["DeploymentFinished"]["Choices"] == [
        {
            "Variable": "$.deployment.status",
            "StringEquals": "in_progress",
            "Next": "WaitForDeployment",
        }
    ]


def test_state_machine_timeout_logging_tracing(synth: Synth, definition: dict[str, Any]) -> None:
    machine = only(synth.templates["retraining"], "AWS::StepFunctions::StateMachine")["Properties"]
    assert definition["TimeoutSeconds"] == 12 * 3600
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"


def _env(template: dict[str, Any], handler: str) -> dict[str, Any]:
    (fn,) = [
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == handler
    ]
    return dict(fn["Properties"]["Environment"]["Variables"])


def test_step_environments_follow_the_contract(synth: Synth) -> None:
    template = synth.templates["retraining"]
    contract = {
        "prepare_data": {
            "DATASETS_BUCKET",
            "CAPTURE_BUCKET",
            "CAPTURE_PREFIX",
            "GROUND_TRUTH_BUCKET",
            "GROUND_TRUTH_PREFIX",
            "ARTIFACTS_BUCKET",
            "BASELINE_KEY",
            "ENDPOINT_NAME",
            "LOOKBACK_HOURS",
        },
        "read_evaluation": {"ARTIFACTS_BUCKET", "MIN_IMPROVEMENT", "GATE_METRIC"},
        "register_model": {"MODEL_PACKAGE_GROUP", "IMAGE_URI"},
        "deploy_model": {
            "ENDPOINT_NAME",
            "SAGEMAKER_ROLE_ARN",
            "IMAGE_URI",
            "ARTIFACTS_BUCKET",
            "BASELINE_KEY",
            "DEPLOYMENT_CONFIG",
            "INSTANCE_TYPE",
            "INSTANCE_COUNT",
            "CAPTURE_CONFIG",
        },
        "check_deployment": {"ENDPOINT_NAME"},
    }
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}
    for handler, names in contract.items():
        env = _env(template, f"lambdas.retrain_steps.{handler}")
        assert set(env) == names | powertools, handler
        assert env["POWERTOOLS_SERVICE_NAME"] == "retrain-steps"
    deploy = _env(template, "lambdas.retrain_steps.deploy_model")
    assert deploy["INSTANCE_TYPE"] == "ml.m5.large" and deploy["INSTANCE_COUNT"] == "1"
    # DEPLOYMENT_CONFIG carries the endpoint's blue/green policy and both rollback alarms
    joined = json.dumps(deploy["DEPLOYMENT_CONFIG"])
    assert "CANARY" in joined and joined.count("AlarmName") == 2
    assert "EnableCapture" in json.dumps(deploy["CAPTURE_CONFIG"])
    read = _env(template, "lambdas.retrain_steps.read_evaluation")
    assert read["GATE_METRIC"] == "auc" and float(read["MIN_IMPROVEMENT"]) == 0.0


def test_trigger_rule_and_environment(synth: Synth) -> None:
    template = synth.templates["retraining"]
    env = _env(template, "lambdas.retrain_trigger.handler")
    assert set(env) - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} == {
        "STATE_TABLE",
        "STATE_MACHINE_ARN",
        "COOLDOWN_MINUTES",
        "ENDPOINT_NAME",
    }
    assert env["COOLDOWN_MINUTES"] == "360"
    assert env["STATE_TABLE"] == {"Fn::ImportValue": "Driftloop-StateTableName"}
    (rule,) = [
        r
        for r in resources(template, "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    props = rule["Properties"]
    # Then the rule matches driftloop's drift and quality events on the driftloop bus
    assert props["EventPattern"] == {
        "source": ["driftloop"],
        "detail-type": ["Drift Detected", "Quality Degraded"],
    }
    assert "Fn::ImportValue" in json.dumps(props["EventBusName"])
    (target,) = props["Targets"]
    trigger_id = next(
        k
        for k, f in resources(template, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == "lambdas.retrain_trigger.handler"
    )
    assert target["Arn"] == {"Fn::GetAtt": [trigger_id, "Arn"]}
    assert "DeadLetterConfig" in target
    # And there is no scheduled retraining unless configured
    assert all(
        "ScheduleExpression" not in r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
    )


def _statements(template: dict[str, Any], role_fragment: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if role_fragment in roles:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_iam_is_scoped(synth: Synth) -> None:
    template = synth.templates["retraining"]
    machine = _statements(template, "WorkflowStateMachineRole")
    processing = [s for s in machine if "sagemaker:CreateProcessingJob" in _as_list(s["Action"])]
    assert json.dumps(processing[0]["Resource"]).count("processing-job/driftloop-endpoint-*") == 1
    passes = [s for s in machine if "iam:PassRole" in _as_list(s["Action"])]
    assert passes and all("JobRole" in json.dumps(s["Resource"]) for s in passes)
    # The trigger may start and list executions of this state machine only
    trigger = _statements(template, "TriggerHandlerRole")
    start = [s for s in trigger if "states:StartExecution" in _as_list(s["Action"])]
    assert start and all(
        s["Resource"]
        == {"Ref": next(iter(resources(template, "AWS::StepFunctions::StateMachine")))}
        for s in start
    )
    # Nowhere a service-wide action, and "*" resources only where AWS has no resource ARNs
    allowed_star = {
        "xray:",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        "cloudwatch:PutMetricData",
        "sagemaker:ListTags",  # added on * by the CDK's training-job integration
    }
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = _as_list(statement["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), statement
            if statement["Resource"] == "*":
                assert all(any(a.startswith(p) for p in allowed_star) for a in actions), statement


def test_registry_and_alarms(synth: Synth) -> None:
    template = synth.templates["retraining"]
    group = only(template, "AWS::SageMaker::ModelPackageGroup")["Properties"]
    assert group["ModelPackageGroupName"] == "driftloop-endpoint-models"
    assert (
        _env(template, "lambdas.retrain_steps.register_model")["MODEL_PACKAGE_GROUP"]
        == "driftloop-endpoint-models"
    )
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "DeploymentRolledBack",
        "Errors",
    }
    for props in alarms.values():
        assert props["Threshold"] == 1 and props["AlarmActions"] and props["OKActions"]
    rolled = alarms["DeploymentRolledBack"]
    assert rolled["Namespace"] == "driftloop"
    assert {"Name": "service", "Value": "retrain-steps"} in rolled["Dimensions"]


def test_dashboard_has_only_metric_widgets(synth: Synth) -> None:
    dashboard = only(synth.templates["dashboard"], "AWS::CloudWatch::Dashboard")["Properties"]
    body = json.dumps(dashboard["DashboardBody"])
    # Then no widget refers to an alarm (moto's CloudFormation cannot resolve alarm ARNs)
    assert "AWS::CloudWatch::Alarm" not in body and "alarms" not in body
    for metric in (
        "Invocations",
        "ModelLatency",
        "Invocation5XXErrors",
        "DriftShare",
        "FeatureDriftScore",
        "RowsChecked",
        "MalformedRows",
        "ModelQuality",
        "QualityDrop",
        "ExecutionsFailed",
        "RetrainingStarted",
        "DeploymentRolledBack",
    ):
        assert metric in body, metric


def test_a_configured_retrain_schedule_targets_the_trigger_too() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_events as events
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk.assertions import Template

    from infra.constructs.retraining import RetrainTrigger

    # Given the trigger construct with a weekly schedule
    stack = cdk.Stack(cdk.App(), "TriggerUnderTest")
    RetrainTrigger(
        stack,
        "Trigger",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
        bus=events.EventBus.from_event_bus_name(stack, "Bus", "driftloop-bus"),
        state_machine=sfn.StateMachine.from_state_machine_arn(
            stack, "Machine", "arn:aws:states:us-east-1:123456789012:stateMachine:retrain"
        ),
        table_name="state",
        endpoint_name="driftloop-endpoint",
        cooldown_minutes=60,
        schedule="cron(0 3 ? * MON *)",
        log_level="INFO",
    )
    template = Template.from_stack(stack).to_json()
    rules = resources(template, "AWS::Events::Rule")
    (function_id,) = resources(template, "AWS::Lambda::Function")
    # Then both the event rule and the schedule invoke the trigger function
    schedules = [r for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    assert [r["Properties"]["ScheduleExpression"] for r in schedules] == ["cron(0 3 ? * MON *)"]
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
