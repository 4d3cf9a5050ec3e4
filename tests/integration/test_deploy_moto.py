"""Deploy the synthesized CDK templates to moto's server, then run the drift check against them.

This is the closest thing to `cdk deploy` without an account: the app is synthesized
once, its file assets are uploaded to the CDK bootstrap bucket on moto (directories
zipped, as the CDK CLI does), every stack is created through CloudFormation in
dependency order, and the stacks' outputs become the drift-check Lambda's environment.
The handler then runs in-process (boto3 pointed at moto) against the deployed buckets,
table and event bus, reading capture files written with driftloop's SageMaker capture
encoder and a baseline built with driftloop.profile.

moto's CloudFormation does not implement every resource type (SageMaker endpoints,
Step Functions logging, alarms, ...); what it skips it skips silently. The assertions
are on what moto does create and on the outputs the other parts read.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import (
    FakeLambdaContext,
    capture_lines,
    load_event,
    loan_baseline,
)

pytestmark = [pytest.mark.slow, pytest.mark.infra, pytest.mark.xdist_group("cdk")]

ACCOUNT = "123456789012"
REGION = "us-east-1"
ORDER = ("stateful", "model", "monitoring", "retraining", "dashboard")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.infra.conftest import synthesize

    return synthesize(tmp_path_factory.mktemp("cdk-out"))


@pytest.fixture(scope="module")
def moto() -> Iterator[Any]:
    from driftloop.local.moto_server import MotoServer

    with MotoServer(host="127.0.0.1", port=0, region=REGION) as server:
        yield server


def _resolve(text: str) -> str:
    return text.replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION)


def _zip_dir(folder: Path, target: Path) -> None:
    # Fast compression: the bundle holds ~80 MB of wheels and this is a test.
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())


def upload_assets(outdir: Path, s3: Any, tmp: Path) -> int:
    """Upload every file asset of every stack as the CDK CLI would. Returns the count."""
    uploaded: set[tuple[str, str]] = set()
    for manifest in sorted(outdir.glob("*.assets.json")):
        files = json.loads(manifest.read_text()).get("files", {})
        for asset_hash, asset in files.items():
            source = outdir / asset["source"]["path"]
            for dest in asset["destinations"].values():
                bucket, key = _resolve(dest["bucketName"]), dest["objectKey"]
                if (bucket, key) in uploaded:
                    continue
                if asset["source"].get("packaging") == "zip":
                    archive = tmp / f"{asset_hash}.zip"
                    if not archive.exists():
                        _zip_dir(source, archive)
                    s3.upload_file(str(archive), bucket, key)
                else:
                    s3.upload_file(str(source), bucket, key)
                uploaded.add((bucket, key))
    return len(uploaded)


def bootstrap(moto: Any) -> str:
    """What `cdk bootstrap` leaves behind that the templates reference."""
    bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
    moto.client("s3").create_bucket(Bucket=bucket)
    moto.client("ssm").put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String", Overwrite=True
    )
    return bucket


def moto_compatible(template_text: str) -> str:
    """The template with the one edit moto needs: no Tags on AWS::KMS::Key.

    moto 5's KMS CloudFormation handler reads tags as `TagKey`/`TagValue` (the KMS API's
    shape) instead of CloudFormation's `Key`/`Value`, and fails on the project tag.
    """
    template = json.loads(template_text)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::KMS::Key":
            resource["Properties"].pop("Tags", None)
    return json.dumps(template)


@pytest.fixture(scope="module")
def deployed(
    synthesized: Any, moto: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, str]]:
    """Create every stack in order; returns {role: outputs}."""
    bootstrap(moto)
    count = upload_assets(synthesized.outdir, moto.client("s3"), tmp_path_factory.mktemp("zips"))
    assert count >= 3  # the Lambda bundle, sourcedir.tar.gz, evaluate.py (+ templates)
    cfn = moto.client("cloudformation")
    outputs: dict[str, dict[str, str]] = {}
    for role in ORDER:
        stack_name = synthesized.stacks[role].stack_name
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=moto_compatible(synthesized.files[role].read_text()),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        (stack,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
                for e in cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
                if "FAILED" in e["ResourceStatus"]
            ]
            pytest.fail(f"{stack_name}: {stack['StackStatus']} {reasons}")
        outputs[role] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs


def test_every_stack_deploys_and_exposes_its_outputs(
    deployed: dict[str, dict[str, str]], moto: Any
) -> None:
    # Given the five stacks created on moto
    stateful = deployed["stateful"]
    # Then the stateful outputs name real buckets with KMS default encryption and the
    # table (versioning, lifecycle and policies are not applied by moto's CloudFormation;
    # tests/infra asserts them on the template)
    s3 = moto.client("s3")
    for name in ("Datasets", "Artifacts", "Capture", "GroundTruth", "Reports"):
        bucket = stateful[f"{name}BucketName"]
        encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        default = encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]
        assert default["SSEAlgorithm"] == "aws:kms"
        assert default["KMSMasterKeyID"] == stateful["DataKeyArn"]
    table = moto.client("dynamodb").describe_table(TableName=stateful["StateTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # And the model stack names the endpoint, the monitoring stack the functions and bus
    assert deployed["model"]["EndpointName"] == "driftloop-endpoint"
    functions = moto.client("lambda")
    for key in ("DriftCheckFunctionName", "QualityCheckFunctionName"):
        config = functions.get_function_configuration(FunctionName=deployed["monitoring"][key])
        assert config["Runtime"] == "python3.12"
    assert moto.client("events").describe_event_bus(Name=deployed["monitoring"]["EventBusName"])
    # And the retraining stack's state machine exists with the RETRAIN_STEPS states
    from lambdas.retrain_steps import RETRAIN_STEPS

    machine = moto.client("stepfunctions").describe_state_machine(
        stateMachineArn=deployed["retraining"]["StateMachineArn"]
    )
    assert set(RETRAIN_STEPS) <= set(json.loads(machine["definition"])["States"])


def observe_trigger_rule(moto: Any, bus: str) -> str:
    """Swap the deployed retrain rule's Lambda target for an SQS queue; returns its URL.

    moto's EventBridge cannot invoke Lambda targets (PutEvents fails), so the test
    watches what the deployed rule would hand the retrain trigger instead.
    """
    events, sqs = moto.client("events"), moto.client("sqs")
    (rule,) = [r for r in events.list_rules(EventBusName=bus)["Rules"] if r.get("EventPattern")]
    targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
    assert [t["Arn"].split(":")[5] for t in targets] == ["function"]
    events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=[t["Id"] for t in targets])
    url = sqs.create_queue(QueueName="retrain-trigger-stand-in")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_targets(Rule=rule["Name"], EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def test_drift_check_runs_against_the_deployed_resources(
    deployed: dict[str, dict[str, str]], moto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdas import _aws, drift_check

    stateful, monitoring = deployed["stateful"], deployed["monitoring"]
    endpoint = deployed["model"]["EndpointName"]
    s3 = moto.client("s3")
    # Given the deployed drift-check function's environment, with the stacks' outputs
    config = moto.client("lambda").get_function_configuration(
        FunctionName=monitoring["DriftCheckFunctionName"]
    )
    env = dict(config["Environment"]["Variables"])
    assert env["CAPTURE_BUCKET"] == stateful["CaptureBucketName"]
    assert env["STATE_TABLE"] == stateful["StateTableName"]
    assert env["EVENT_BUS_NAME"] == monitoring["EventBusName"]
    env.update(DRIFT_CONFIG=json.dumps({"min_rows": 50}), FIRST_WINDOW_START="2026-11-01T00:00:00Z")
    # And a baseline at the contract's key, one stable hour and one shifted hour of capture
    s3.put_object(
        Bucket=env["ARTIFACTS_BUCKET"], Key=env["BASELINE_KEY"], Body=loan_baseline().to_json()
    )
    for hour, shift in ((0, 0.0), (1, 1.5)):
        when = T0 + timedelta(hours=hour, minutes=10)
        body, _, _ = capture_lines(
            np.random.default_rng(hour), 300, when, shift=shift, id_prefix=f"h{hour}"
        )
        key = f"capture/{endpoint}/AllTraffic/{when:%Y/%m/%d/%H}/part-0.jsonl"
        s3.put_object(Bucket=env["CAPTURE_BUCKET"], Key=key, Body=body)
    trigger_queue = observe_trigger_rule(moto, monitoring["EventBusName"])
    # When the handler runs in-process with that environment, boto3 pointed at moto
    for key, value in {**moto.env(), **env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_CONFIG_FILE", raising=False)
    _aws.reset_clients()
    event = load_event(
        "scheduled_event", time=(T0 + timedelta(hours=2, minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    try:
        summary = drift_check.handler(event, FakeLambdaContext())
    finally:
        _aws.reset_clients()
    # Then both windows were checked and reported in the deployed reports bucket
    assert summary["windows_checked"] == 2, summary
    reports = s3.list_objects_v2(Bucket=stateful["ReportsBucketName"], Prefix="drift/")
    keys = sorted(o["Key"] for o in reports.get("Contents", []))
    assert f"drift/{endpoint}/2026/11/01/00/report.json" in keys
    assert f"drift/{endpoint}/2026/11/01/01/report.html" in keys
    shifted = json.loads(
        s3.get_object(
            Bucket=stateful["ReportsBucketName"], Key=f"drift/{endpoint}/2026/11/01/01/report.json"
        )["Body"].read()
    )
    stable = json.loads(
        s3.get_object(
            Bucket=stateful["ReportsBucketName"], Key=f"drift/{endpoint}/2026/11/01/00/report.json"
        )["Body"].read()
    )
    assert shifted["dataset_drift"] is True and stable["dataset_drift"] is False
    assert "income" in shifted["drifted_features"]
    # And the checkpoint advanced in the deployed state table
    item = moto.client("dynamodb").get_item(
        TableName=stateful["StateTableName"], Key={"pk": {"S": f"checkpoint#drift#{endpoint}"}}
    )["Item"]
    assert item["window_end"]["S"].startswith("2026-11-01T02:00:00")
    assert os.environ["AWS_ENDPOINT_URL"] == moto.endpoint_url
    # And the deployed retrain rule routed the one Drift Detected event (the trigger's input)
    messages = moto.client("sqs").receive_message(QueueUrl=trigger_queue, MaxNumberOfMessages=10)
    received = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    assert [e["detail-type"] for e in received] == ["Drift Detected"]
    assert received[0]["source"] == "driftloop"
    assert received[0]["detail"]["endpoint"] == endpoint
