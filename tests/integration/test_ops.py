"""Operator queries under moto: the runs in the registry and the status of an endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from driftloop import ops
from lambdas.retrain_steps import registry_metadata
from tests.integration.conftest import make_table

ENDPOINT = "loan-default"
GROUP = "loan-models"
ROLE = "arn:aws:iam::123456789012:role/sm"


def register(sm: Any, run_id: str, *, deploy: bool, champion: float, challenger: float) -> str:
    """A registry entry exactly as register_model writes it."""
    state = {
        "run_id": run_id,
        "endpoint": ENDPOINT,
        "snapshot": {"id": run_id},
        "training_job_name": f"job-{run_id}",
        "decision": {
            "deploy": deploy,
            "metric": "auc",
            "champion": champion,
            "challenger": challenger,
            "margin": challenger - champion,
            "min_improvement": 0.01,
            "reason": "because",
        },
        "evaluation": {
            "n_holdout": 300,
            "challenger": {"auc": challenger, "accuracy": 0.8},
            "champion": {"auc": champion, "accuracy": 0.79},
        },
    }
    return sm.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved" if deploy else "Rejected",
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": f"s3://a/{run_id}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        CustomerMetadataProperties=registry_metadata(state, {"max-iter": "400"}),
    )["ModelPackageArn"]


@pytest.fixture
def world(aws: None) -> dict[str, Any]:
    c = ops.clients(region="us-east-1")
    sm = c["sagemaker"]
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    register(sm, "run-1", deploy=True, champion=0.70, challenger=0.80)
    register(sm, "run-2", deploy=False, champion=0.80, challenger=0.79)
    return c


def test_list_runs_reads_every_run_with_its_decision_and_metrics(world: dict[str, Any]) -> None:
    # When the runs are listed
    runs = ops.list_runs(world["sagemaker"], GROUP)
    # Then both runs come back, newest first, with the verdict and the numbers behind it
    assert [r["run_id"] for r in runs] == ["run-2", "run-1"]
    rejected, approved = runs
    assert (rejected["approval"], rejected["decision"]) == ("Rejected", "reject")
    assert (approved["approval"], approved["decision"]) == ("Approved", "deploy")
    assert approved["metric"] == "auc" and approved["margin"] == pytest.approx(0.10)
    assert approved["champion"] == 0.70 and approved["challenger"] == 0.80
    assert rejected["metrics"]["challenger"] == {"auc": 0.79, "accuracy": 0.8}
    assert rejected["metrics"]["champion"]["auc"] == 0.80
    assert approved["hyperparameters"] == {"max-iter": "400"}
    assert approved["snapshot_id"] == "run-1" and approved["n_holdout"] == 300
    assert approved["model_data_url"] == "s3://a/run-1/model.tar.gz"


def test_list_runs_of_an_empty_group_is_empty(world: dict[str, Any]) -> None:
    world["sagemaker"].create_model_package_group(ModelPackageGroupName="empty")
    assert ops.list_runs(world["sagemaker"], "empty") == []


def test_status_reports_the_serving_model_its_version_and_the_last_verdicts(
    world: dict[str, Any],
) -> None:
    # Given the endpoint serving run-1's model, checkpoints, reports and a retraining lock
    sm, s3, ddb = world["sagemaker"], world["s3"], world["dynamodb"]
    sm.create_model(
        ModelName="m1",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://a/run-1/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="c1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://capture/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="c1")
    make_table()
    s3.create_bucket(Bucket="reports")
    ddb.put_item(
        TableName="state",
        Item={
            "pk": {"S": f"checkpoint#drift#{ENDPOINT}"},
            "window_end": {"S": "2026-11-02T01:00:00Z"},
        },
    )
    ddb.put_item(
        TableName="state",
        Item={
            "pk": {"S": f"retrain-lock#{ENDPOINT}"},
            "started_at": {"S": "2026-11-01T23:20:00Z"},
            "execution_arn": {"S": "arn:exec"},
            "reason": {"S": json.dumps({"detail_type": "Drift"})},
        },
    )
    for hour, drift in (("2026/11/01/23", False), ("2026/11/02/00", True)):
        s3.put_object(
            Bucket="reports",
            Key=f"drift/{ENDPOINT}/{hour}/report.json",
            Body=json.dumps(
                {
                    "window_start": hour,
                    "status": "ok",
                    "n_rows": 10,
                    "dataset_drift": drift,
                    "drift_share": 0.5,
                    "drifted_features": ["income"] if drift else [],
                }
            ),
        )
    s3.put_object(
        Bucket="reports",
        Key=f"quality/{ENDPOINT}/2026/10/31/05/report.json",
        Body=json.dumps(
            {
                "status": "ok",
                "degraded": False,
                "metric": "auc",
                "metrics": {"auc": {"current": 0.81, "drop": 0.01}},
                "n_matched": 120,
            }
        ),
    )

    # When the status is asked
    out = ops.status(
        sm,
        s3,
        ddb,
        endpoint=ENDPOINT,
        state_table="state",
        reports_bucket="reports",
        model_package_group=GROUP,
    )

    # Then it names the serving model, its registry version and run
    serving = out["serving"]
    assert serving["status"] == "InService" and serving["model_name"] == "m1"
    assert serving["data_capture"] is True
    assert serving["model_package"]["run_id"] == "run-1"
    assert serving["model_package"]["version"] == 1
    # And the last drift verdict is the report of the window before the checkpoint
    assert out["drift"]["checked_until"] == "2026-11-02T01:00:00Z"
    assert out["drift"]["last"]["dataset_drift"] is True
    assert out["drift"]["last"]["report_uri"] == (
        f"s3://reports/drift/{ENDPOINT}/2026/11/02/00/report.json"
    )
    # And quality (no checkpoint yet) shows its newest report; the lock shows the last run
    assert out["quality"]["checked_until"] is None
    assert out["quality"]["last"]["value"] == 0.81 and out["quality"]["last"]["n_matched"] == 120
    assert out["last_retraining"]["execution_arn"] == "arn:exec"
    assert out["last_retraining"]["reason"] == {"detail_type": "Drift"}


def test_status_of_a_missing_endpoint(world: dict[str, Any]) -> None:
    make_table()
    world["s3"].create_bucket(Bucket="reports")
    out = ops.status(
        world["sagemaker"],
        world["s3"],
        world["dynamodb"],
        endpoint="nope",
        state_table="state",
        reports_bucket="reports",
    )
    assert out["serving"] == {"status": "NotFound"}
    assert out["drift"] == {"checked_until": None, "last": None}
    assert out["last_retraining"] is None
