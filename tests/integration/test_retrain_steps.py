"""The retraining workflow's Lambda steps under moto, run in RETRAIN_STEPS order.

Train and Evaluate are SageMaker jobs in AWS; here Train is played by a real model
archive from training/train.py (trained once per module on the initial training set)
and a moto CreateTrainingJob, Evaluate by training/evaluate.py's compare_models (or a
hand-written evaluation.json in its documented format when a test needs a given verdict).

moto does not implement UpdateEndpoint, so the tests answer it through a botocore
`before-call` hook on the handler's SageMaker client (the seam moto itself uses) and play
SageMaker's blue/green outcome by setting the endpoint's status and config in moto's
backend: InService on the new config (success) or InService on the old one (rollback).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lambdas import _aws, retrain_steps
from lambdas.retrain_steps import LAMBDA_STEPS, RETRAIN_STEPS
from tests.integration.conftest import (
    FEATURES,
    FakeLambdaContext,
    capture_lines,
    loan_baseline,
    loan_rows,
)

ENDPOINT = "loan-default"
RUN_AT = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
RUN_ID = "loan-default-20261101T123000Z-abcdef12"
HEADER = [*FEATURES, "default"]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
DEPLOYMENT_CONFIG = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 300,
        }
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "driftloop-5xx"}]},
}
CAPTURE_CONFIG = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://capture/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
}


def labelled_csv(seed: int, n: int) -> bytes:
    rng = np.random.default_rng(seed)
    income, age, region, score = loan_rows(rng, n)
    y = (rng.random(n) < score).astype(int)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for i in range(n):
        writer.writerow([f"{income[i]:.4f}", f"{age[i]:.2f}", region[i], int(y[i])])
    return out.getvalue().encode()


@functools.cache
def small_archive() -> bytes:
    """A model.tar.gz holding just what the deploy step reads: baseline.json."""
    data = loan_baseline(seed=11).to_json()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("baseline.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real model.tar.gz: training/train.py fitted on the initial training set."""
    from training import train

    root = tmp_path_factory.mktemp("model")
    (root / "train").mkdir()
    (root / "train" / "train.csv").write_bytes(labelled_csv(1, 600))
    model_dir = root / "model"
    args = train.parse_args(
        [
            "--train",
            str(root / "train"),
            "--model-dir",
            str(model_dir),
            "--output-data-dir",
            str(root / "out"),
            "--categorical",
            "region",
            "--target",
            "default",
            "--features",
            "income,age,region",
            "--max-iter",
            "30",
        ]
    )
    with threadpool_limits(limits=1, user_api="openmp"):  # two test workers share two cores
        train.train(args)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return buf.getvalue()


@functools.cache
def seeded_objects() -> tuple[tuple[str, str, bytes], ...]:
    """The initial training set, and the traffic and labels around the run (built once).

    Traffic: 100 requests an hour from 08:00 to 12:00 (12:00 is still in progress at
    12:30), one hour long ago (03:00, outside the 6-hour lookback); labels arrive an hour
    later, except for the last 20 requests of 11:00.
    """
    out: list[tuple[str, str, bytes]] = []
    for split, (seed, n) in {
        "train": (1, 600),
        "validation": (2, 200),
        "holdout": (3, 200),
    }.items():
        out.append(("datasets", f"training/initial/{split}.csv", labelled_csv(seed, n)))
    for hour in (3, 8, 9, 10, 11, 12):
        when = datetime(2026, 11, 1, hour, 10, tzinfo=UTC)
        body, ids, scores = capture_lines(
            np.random.default_rng(hour), 100, when, id_prefix=f"h{hour:02d}"
        )
        out.append(
            ("capture", f"capture/{ENDPOINT}/AllTraffic/{when:%Y/%m/%d/%H}/part.jsonl", body)
        )
        labelled = ids[:80] if hour == 11 else ids
        truth = b"".join(
            json.dumps(
                {
                    "groundTruthData": {"data": str(int(s > 0.5)), "encoding": "CSV"},
                    "eventMetadata": {"eventId": rid},
                    "eventVersion": "0",
                }
            ).encode()
            + b"\n"
            for rid, s in zip(labelled, scores, strict=False)
        )
        label_hour = when + timedelta(hours=1)
        if label_hour <= RUN_AT:
            key = f"ground-truth/{ENDPOINT}/{label_hour:%Y/%m/%d/%H}/labels.jsonl"
            out.append(("truth", key, truth))
    return tuple(out)


@pytest.fixture
def world(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    s3 = boto3.client("s3")
    for bucket in ("datasets", "artifacts", "capture", "truth"):
        s3.create_bucket(Bucket=bucket)
    champion_baseline = loan_baseline(seed=7).to_json()
    s3.put_object(Bucket="artifacts", Key="baselines/current/baseline.json", Body=champion_baseline)
    s3.put_object(Bucket="artifacts", Key="models/initial/model.tar.gz", Body=small_archive())

    sm = boto3.client("sagemaker")
    role = "arn:aws:iam::123456789012:role/sagemaker"
    sm.create_model(
        ModelName="champion",
        ExecutionRoleArn=role,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": "s3://artifacts/models/initial/model.tar.gz",
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName="champion-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "champion",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="champion-config")

    for bucket, key, body in seeded_objects():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    env = {
        "ENDPOINT_NAME": ENDPOINT,
        "DATASETS_BUCKET": "datasets",
        "CAPTURE_BUCKET": "capture",
        "CAPTURE_PREFIX": "capture",
        "GROUND_TRUTH_BUCKET": "truth",
        "GROUND_TRUTH_PREFIX": "ground-truth",
        "ARTIFACTS_BUCKET": "artifacts",
        "BASELINE_KEY": "baselines/current/baseline.json",
        "LOOKBACK_HOURS": "6",
        "HOLDOUT_FRACTION": "0.25",
        "MIN_HOLDOUT_ROWS": "50",
        "MIN_IMPROVEMENT": "0.0",
        "GATE_METRIC": "auc",
        "MODEL_PACKAGE_GROUP": "loan-models",
        "IMAGE_URI": IMAGE,
        "SAGEMAKER_ROLE_ARN": role,
        "DEPLOYMENT_CONFIG": json.dumps(DEPLOYMENT_CONFIG),
        "INSTANCE_TYPE": "ml.m5.large",
        "INSTANCE_COUNT": "1",
        "CAPTURE_CONFIG": json.dumps(CAPTURE_CONFIG),
        "POWERTOOLS_SERVICE_NAME": "retrain",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"champion_baseline": champion_baseline, "archive": small_archive()}


def initial_state() -> dict[str, Any]:
    event = json.loads((Path(__file__).parent.parent / "events" / "drift_event.json").read_text())
    return {
        "run_id": RUN_ID,
        "endpoint": ENDPOINT,
        "started_at": "2026-11-01T12:30:00Z",
        "reason": {
            "source": "driftloop",
            "detail_type": "Drift Detected",
            "detail": event["detail"],
        },
    }


def s3_text(uri: str) -> str:
    bucket, key = _aws.split_s3_uri(uri)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def moto_endpoint() -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends["123456789012"]["us-east-1"].endpoints[ENDPOINT]


@pytest.fixture
def update_endpoint_calls() -> Iterator[list[dict[str, Any]]]:
    """Answer UpdateEndpoint (not implemented by moto) and record its parameters."""
    calls: list[dict[str, Any]] = []

    class Ok:
        status_code = 200

    def answer(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        calls.append(json.loads(params["body"]))  # the serialized request (JSON protocol)
        moto_endpoint().endpoint_status = "Updating"
        return Ok(), {
            "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"
        }

    _aws.sagemaker().meta.events.register("before-call.sagemaker.UpdateEndpoint", answer)
    yield calls


def fake_train(state: dict[str, Any], archive: bytes) -> None:
    """The Train state: a training job record and its model.tar.gz at the documented path."""
    boto3.client("sagemaker").create_training_job(
        TrainingJobName=state["training_job_name"],
        RoleArn="arn:aws:iam::123456789012:role/sm",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": "train.py",
            "max-iter": "30",
            "categorical": "region",
        },
        OutputDataConfig={"S3OutputPath": "s3://artifacts/models/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    bucket, key = _aws.split_s3_uri(state["challenger_model_data_url"])
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=archive)


def real_evaluate(state: dict[str, Any], tmp: Path) -> None:
    """The Evaluate state: training/evaluate.py on the snapshot's holdout."""
    from training.evaluate import compare_models

    s3 = boto3.client("s3")
    paths = {}
    for name, uri in (
        ("champion", state["champion"]["model_data_url"]),
        ("challenger", state["challenger_model_data_url"]),
        ("holdout", state["snapshot"]["holdout_uri"]),
    ):
        bucket, key = _aws.split_s3_uri(uri)
        paths[name] = tmp / f"{name}{'.csv' if name == 'holdout' else '.tar.gz'}"
        s3.download_file(bucket, key, str(paths[name]))
    result = compare_models(paths["champion"], paths["challenger"], paths["holdout"], "auc")
    bucket, prefix = _aws.split_s3_uri(state["evaluation_uri"])
    s3.put_object(Bucket=bucket, Key=f"{prefix}evaluation.json", Body=json.dumps(result))


def run_workflow(
    context: FakeLambdaContext,
    evaluate: Callable[[dict[str, Any]], None],
    archive: bytes,
    on_wait: Callable[[int], None] = lambda _: None,
) -> tuple[dict[str, Any], list[str]]:
    """Every state in RETRAIN_STEPS order, with the Gate and Wait loop of the state machine."""
    state = initial_state()
    visited: list[str] = []
    waits = 0
    for step in RETRAIN_STEPS:
        if (
            step in ("DeployModel", "WaitForDeployment", "CheckDeployment")
            and not state["decision"]["deploy"]
        ):
            continue
        visited.append(step)
        if step == "Train":
            fake_train(state, archive)
        elif step == "Evaluate":
            evaluate(state)
        elif step == "WaitForDeployment":
            on_wait(waits)
            waits += 1
        elif step == "CheckDeployment":
            state = retrain_steps.check_deployment(state, context)
            while state["deployment"]["status"] == "in_progress":
                visited.extend(["WaitForDeployment", "CheckDeployment"])
                on_wait(waits)
                waits += 1
                state = retrain_steps.check_deployment(state, context)
        elif step in LAMBDA_STEPS:
            handler = getattr(retrain_steps, LAMBDA_STEPS[step])
            state = handler(json.loads(json.dumps(state)), context)  # a JSON round trip, as in SFN
    return state, visited


def package(arn: str) -> dict[str, Any]:
    return boto3.client("sagemaker").describe_model_package(ModelPackageName=arn)


@pytest.mark.slow
def test_a_challenger_no_better_than_the_champion_is_recorded_rejected_and_not_deployed(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
    tmp_path: Path,
    model_archive: bytes,
) -> None:
    # Given a drift-triggered run whose challenger is the champion's twin (no improvement):
    # both are the same real model from training/train.py
    boto3.client("s3").put_object(
        Bucket="artifacts", Key="models/initial/model.tar.gz", Body=model_archive
    )
    # When every step runs in order, Evaluate being the real training/evaluate.py
    with threadpool_limits(limits=1, user_api="openmp"):
        state, visited = run_workflow(
            lambda_context, lambda s: real_evaluate(s, tmp_path), model_archive
        )

    # Then the snapshot holds the current training set plus the labelled recent traffic,
    # and the most recent labelled rows are the holdout
    snap = state["snapshot"]
    assert snap["id"] == RUN_ID
    recent = 100 * 3 + 80  # 08:00-11:00 labelled; 03:00 and 12:00 excluded
    n_hold = 95  # ceil(0.25 * 380)
    assert (snap["n_train"], snap["n_validation"], snap["n_holdout"]) == (
        600 + 200 + recent - n_hold,
        200,
        n_hold,
    )
    manifest = json.loads(s3_text(snap["manifest_uri"]))
    assert manifest["holdout_from"] == "recent" and manifest["parent"] == "initial"
    assert manifest["captured_from"] == "2026-11-01T06:00:00Z"
    assert manifest["captured_until"] == "2026-11-01T12:00:00Z"
    assert manifest["recent"]["n_matched"] == recent
    assert manifest["sources"]["train"][:2] == [
        "s3://datasets/training/initial/train.csv",
        "s3://datasets/training/initial/holdout.csv",
    ]
    holdout = list(csv.reader(io.StringIO(s3_text(snap["holdout_uri"]))))
    assert holdout[0] == HEADER and len(holdout) == n_hold + 1
    train_rows = list(csv.reader(io.StringIO(s3_text(snap["train_uri"]))))
    assert train_rows[0] == HEADER and len(train_rows) == snap["n_train"] + 1

    # And the job names are unique, valid SageMaker names; the champion was read
    assert state["training_job_name"] != state["processing_job_name"]
    assert all(len(n) <= 63 for n in (state["training_job_name"], state["processing_job_name"]))
    assert state["champion"] == {
        "model_name": "champion",
        "model_data_url": "s3://artifacts/models/initial/model.tar.gz",
        "endpoint_config_name": "champion-config",
        "variant_name": "AllTraffic",
    }
    assert state["challenger_model_data_url"] == (
        f"s3://artifacts/models/{state['training_job_name']}/output/model.tar.gz"
    )

    # And the gate kept the champion, with the numbers behind it
    decision = state["decision"]
    assert decision["deploy"] is False and decision["margin"] == 0.0
    assert (
        decision["champion"] == decision["challenger"] == state["evaluation"]["challenger"]["auc"]
    )
    assert visited == [
        "PrepareData",
        "Train",
        "Evaluate",
        "ReadEvaluation",
        "Gate",
        "RegisterModel",
        "Notify",
    ]

    # And the run is in the registry as Rejected, with its metrics and hyperparameters
    pkg = package(state["model_package_arn"])
    assert pkg["ModelApprovalStatus"] == "Rejected"
    meta = pkg["CustomerMetadataProperties"]
    assert meta["run_id"] == RUN_ID and meta["snapshot_id"] == RUN_ID
    assert meta["decision"] == "reject" and meta["margin"] == "0.0"
    assert float(meta["challenger.auc"]) == pytest.approx(decision["challenger"])
    assert meta["hp.max-iter"] == "30"
    container = pkg["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == state["challenger_model_data_url"]
    assert container["Image"] == IMAGE
    assert state["notification"]["detail"]["outcome"] == "rejected"

    # And nothing changed on the endpoint or the baseline
    assert (
        boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        == "champion-config"
    )
    assert (
        s3_text("s3://artifacts/baselines/current/baseline.json").encode()
        == world["champion_baseline"]
    )


def better_evaluation(state: dict[str, Any]) -> None:
    """An Evaluate result (training/evaluate.py's format) where the challenger wins."""
    doc = {
        "metric": "auc",
        "higher_is_better": True,
        "n_holdout": state["snapshot"]["n_holdout"],
        "champion": {"auc": 0.71, "accuracy": 0.70},
        "challenger": {"auc": 0.78, "accuracy": 0.74},
        "margin": 0.07,
        "winner": "challenger",
    }
    bucket, prefix = _aws.split_s3_uri(state["evaluation_uri"])
    boto3.client("s3").put_object(
        Bucket=bucket, Key=f"{prefix}evaluation.json", Body=json.dumps(doc)
    )


def test_a_better_challenger_is_deployed_blue_green_and_its_baseline_promoted(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
    update_endpoint_calls: list[dict[str, Any]],
) -> None:
    # Given SageMaker finishing the blue/green update after two polls
    def sagemaker_progress(n_wait: int) -> None:
        if n_wait == 1:
            ep = moto_endpoint()
            ep.endpoint_config_name = update_endpoint_calls[0]["EndpointConfigName"]
            ep.endpoint_status = "InService"

    # When the workflow runs with a challenger that beats the champion
    state, visited = run_workflow(
        lambda_context, better_evaluation, world["archive"], sagemaker_progress
    )

    # Then it was approved, registered, and deployed with the blue/green config
    assert state["decision"]["deploy"] is True
    assert state["decision"]["margin"] == pytest.approx(0.07)
    assert package(state["model_package_arn"])["ModelApprovalStatus"] == "Approved"
    assert len(update_endpoint_calls) == 1
    call = update_endpoint_calls[0]
    assert call["EndpointName"] == ENDPOINT and call["DeploymentConfig"] == DEPLOYMENT_CONFIG
    dep = state["deployment"]
    assert call["EndpointConfigName"] == dep["endpoint_config_name"] == dep["model_name"]
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=dep["endpoint_config_name"])
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://capture/capture"
    assert config["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    model = sm.describe_model(ModelName=dep["model_name"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == state["challenger_model_data_url"]
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    # And the Wait loop polled until InService on the new config
    assert visited[-5:] == [
        "WaitForDeployment",
        "CheckDeployment",
        "WaitForDeployment",
        "CheckDeployment",
        "Notify",
    ]
    assert dep["status"] == "deployed" and dep["rolled_back"] is False and dep["checks"] == 2
    # And the new model's baseline (from its model.tar.gz) is now the drift reference
    with tarfile.open(fileobj=io.BytesIO(world["archive"])) as tar:
        member = tar.extractfile("baseline.json")
        assert member is not None
        archived = member.read()
    assert s3_text("s3://artifacts/baselines/current/baseline.json").encode() == archived
    # And the snapshot is now the current training set
    assert json.loads(s3_text("s3://datasets/training/current.json"))["snapshot_id"] == RUN_ID
    assert state["notification"]["detail"]["outcome"] == "deployed"


def test_a_rolled_back_deployment_leaves_the_champion_serving_with_its_baseline(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
    update_endpoint_calls: list[dict[str, Any]],
) -> None:
    # Given SageMaker's rollback alarms firing: the endpoint returns to the old config
    def rollback(n_wait: int) -> None:
        if n_wait == 0:
            moto_endpoint().endpoint_status = "RollingBack"
        else:
            moto_endpoint().endpoint_status = "InService"  # still on champion-config

    # When the workflow runs with a better challenger
    state, _ = run_workflow(lambda_context, better_evaluation, world["archive"], rollback)

    # Then the deployment is reported rolled back and the champion keeps serving
    dep = state["deployment"]
    assert dep["status"] == "rolled_back" and dep["rolled_back"] is True
    assert dep["serving_endpoint_config_name"] == "champion-config"
    assert (
        boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        == "champion-config"
    )
    # And the champion's baseline and training set stay current
    assert (
        s3_text("s3://artifacts/baselines/current/baseline.json").encode()
        == world["champion_baseline"]
    )
    assert "Contents" not in boto3.client("s3").list_objects_v2(
        Bucket="datasets", Prefix="training/current.json"
    )
    # And the run is still recorded (approved by the gate) and notified as rolled back
    assert package(state["model_package_arn"])["ModelApprovalStatus"] == "Approved"
    assert state["notification"]["detail"]["outcome"] == "rolled_back"


def test_without_recent_labels_the_parent_holdout_is_kept_and_a_missing_evaluation_is_clear(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
) -> None:
    # Given no ground truth at all
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket="truth").get("Contents", []):
        s3.delete_object(Bucket="truth", Key=obj["Key"])
    # When the data is prepared
    state = retrain_steps.prepare_data(initial_state(), lambda_context)
    # Then the snapshot keeps the current holdout (nothing recent to hold out) and train
    snap = state["snapshot"]
    assert (snap["n_train"], snap["n_validation"], snap["n_holdout"]) == (600, 200, 200)
    assert snap["holdout_from"] == "parent"
    # And reading an evaluation that was never written names the object
    with pytest.raises(retrain_steps.DriftloopError, match="evaluation.json: evaluation not found"):
        retrain_steps.read_evaluation(state, lambda_context)


def _captured_inputs(hours: tuple[int, ...]) -> list[tuple[float, float, str]]:
    """The (income, age, region) of every request seeded_objects() captured in these hours.

    capture_lines draws its rows with loan_rows from the same generator (seeded by the hour).
    """
    out = []
    for hour in hours:
        income, age, region, _ = loan_rows(np.random.default_rng(hour), 100)
        out += [
            (float(f"{x:.4f}"), float(f"{a:.2f}"), str(r))
            for x, a, r in zip(income, age, region, strict=True)
        ]
    return sorted(out)


def test_prepare_data_writes_the_recent_captured_traffic_as_the_baseline_channel(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given at least 300 rows wanted for a baseline, and 400 requests captured in the
    # 6-hour look-back (08:00-11:00), 20 of them without a label yet
    monkeypatch.setenv("MIN_BASELINE_ROWS", "300")
    # When the data is prepared for a drift event on an older window (05:00)
    state = retrain_steps.prepare_data(initial_state(), lambda_context)
    # Then the snapshot's baseline channel holds every captured request of the look-back,
    # labelled or not, as the model's inputs (no label column)
    snap = state["snapshot"]
    assert snap["baseline_uri"] == f"s3://datasets/training/{RUN_ID}/baseline/baseline.csv"
    assert (snap["n_baseline"], snap["baseline_from"]) == (400, "recent")
    rows = list(csv.reader(io.StringIO(s3_text(snap["baseline_uri"]))))
    assert rows[0] == list(FEATURES) and len(rows) == 401
    got = sorted((float(r[0]), float(r[1]), r[2]) for r in rows[1:])
    assert got == _captured_inputs((8, 9, 10, 11))
    # And the manifest says where the baseline came from
    manifest = json.loads(s3_text(snap["manifest_uri"]))
    assert manifest["baseline_from"] == "recent" and manifest["n_baseline"] == 400
    assert manifest["baseline_captured_from"] == "2026-11-01T06:00:00Z"
    assert manifest["recent"]["n_baseline_captured"] == 400

    # When the triggering window started at 10:00: only 10:00-11:00 are the new world
    later = initial_state()
    later["run_id"] = RUN_ID + "-later"
    later["reason"]["detail"]["window_start"] = "2026-11-01T10:00:00Z"
    state = retrain_steps.prepare_data(later, lambda_context)
    # Then those 200 rows are too few, and the baseline channel is the training set
    snap = state["snapshot"]
    assert (snap["baseline_from"], snap["n_baseline"]) == ("train", snap["n_train"])
    assert s3_text(snap["baseline_uri"]) == s3_text(snap["train_uri"])
    assert json.loads(s3_text(snap["manifest_uri"]))["recent"]["n_baseline_captured"] == 200

    # When 150 rows are enough
    monkeypatch.setenv("MIN_BASELINE_ROWS", "150")
    later["run_id"] = RUN_ID + "-enough"
    snap = retrain_steps.prepare_data(later, lambda_context)["snapshot"]
    # Then the baseline is the 200 captured requests since the triggering window's start
    rows = list(csv.reader(io.StringIO(s3_text(snap["baseline_uri"]))))
    assert (snap["baseline_from"], snap["n_baseline"], len(rows)) == ("recent", 200, 201)
    assert sorted((float(r[0]), float(r[1]), r[2]) for r in rows[1:]) == _captured_inputs((10, 11))


def test_a_model_archive_without_a_baseline_is_never_deployed(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
) -> None:
    # Given an approved challenger whose archive lacks baseline.json
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"not a model"
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    boto3.client("s3").put_object(
        Bucket="artifacts", Key="models/x/output/model.tar.gz", Body=buf.getvalue()
    )
    state = {
        **initial_state(),
        "decision": {"deploy": True},
        "challenger_model_data_url": "s3://artifacts/models/x/output/model.tar.gz",
        "champion": {"endpoint_config_name": "champion-config", "variant_name": "AllTraffic"},
    }
    # When the deploy step runs
    with pytest.raises(retrain_steps.DriftloopError, match="no baseline.json in the model archive"):
        retrain_steps.deploy_model(state, lambda_context)
    # Then no model was created and the endpoint is untouched
    assert boto3.client("sagemaker").list_models()["Models"][0]["ModelName"] == "champion"
    assert len(boto3.client("sagemaker").list_models()["Models"]) == 1


def test_a_state_document_missing_a_field_is_a_clear_error(
    world: dict[str, Any],
    lambda_context: FakeLambdaContext,
) -> None:
    with pytest.raises(retrain_steps.DriftloopError, match="missing decision"):
        retrain_steps.register_model({"run_id": RUN_ID}, lambda_context)
    with pytest.raises(retrain_steps.DriftloopError, match="missing run_id"):
        retrain_steps.prepare_data({}, lambda_context)


def test_every_lambda_step_names_a_handler_in_the_step_order() -> None:
    assert set(LAMBDA_STEPS) <= set(RETRAIN_STEPS)
    assert RETRAIN_STEPS[0] == "PrepareData" and RETRAIN_STEPS[-1] == "Notify"
    assert all(callable(getattr(retrain_steps, h)) for h in LAMBDA_STEPS.values())


def test_a_retried_deploy_step_finishes_instead_of_failing_on_existing_resources(
    world: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    # Given UpdateEndpoint throttled on the first attempt (Step Functions then retries)
    calls: list[dict[str, Any]] = []

    class Response:
        def __init__(self, code: int) -> None:
            self.status_code = code

    def flaky(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        calls.append(json.loads(params["body"]))
        if len(calls) == 1:
            return Response(400), {"Error": {"Code": "ThrottlingException", "Message": "slow"}}
        return Response(200), {"EndpointArn": "arn:aws:sagemaker:us-east-1:123:endpoint/x"}

    _aws.sagemaker().meta.events.register("before-call.sagemaker.UpdateEndpoint", flaky)
    bucket_key = "models/job/output/model.tar.gz"
    boto3.client("s3").put_object(Bucket="artifacts", Key=bucket_key, Body=small_archive())
    state = {
        **initial_state(),
        "decision": {"deploy": True},
        "challenger_model_data_url": f"s3://artifacts/{bucket_key}",
        "champion": {"endpoint_config_name": "champion-config", "variant_name": "AllTraffic"},
    }
    # When the step fails once and is retried with the same input
    with pytest.raises(Exception, match="ThrottlingException"):
        retrain_steps.deploy_model(dict(state), lambda_context)
    out = retrain_steps.deploy_model(dict(state), lambda_context)
    # Then the retry reused the model and config it had created and updated the endpoint
    assert len(calls) == 2 and calls[1]["EndpointConfigName"] == out["deployment"]["model_name"]
    names = [m["ModelName"] for m in boto3.client("sagemaker").list_models()["Models"]]
    assert sorted(names) == sorted(["champion", out["deployment"]["model_name"]])
