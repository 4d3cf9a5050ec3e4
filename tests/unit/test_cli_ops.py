"""`driftloop runs` and `driftloop status`: the tables printed from driftloop.ops answers.

driftloop.ops itself is tested against moto (tests/integration/test_ops.py); here its
answers are given, and what is checked is the command line around them: arguments
reach the query, tables and JSON come out, AWS failures become one line.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from driftloop import ops
from driftloop.cli import main

RUNS = [
    {
        "run_id": "run-2",
        "version": 2,
        "created_at": "2026-11-02T10:00:00+00:00",
        "approval": "Rejected",
        "decision": "reject",
        "metric": "auc",
        "challenger": 0.79,
        "champion": 0.80,
        "margin": -0.01,
        "model_data_url": "s3://a/run-2/model.tar.gz",
    },
    {
        "run_id": "run-1",
        "version": 1,
        "created_at": "2026-11-01T10:00:00+00:00",
        "approval": "Approved",
        "decision": "deploy",
        "metric": "auc",
        "challenger": 0.80,
        "champion": 0.70,
        "margin": 0.10,
        "model_data_url": "s3://a/run-1/model.tar.gz",
    },
]

STATUS = {
    "endpoint": "loan-default",
    "serving": {
        "status": "InService",
        "model_name": "m-1",
        "model_data_url": "s3://a/run-1/model.tar.gz",
        "data_capture": True,
        "model_package": {"version": 1, "approval": "Approved", "run_id": "run-1"},
    },
    "drift": {
        "checked_until": "2026-11-02T12:00:00Z",
        "last": {
            "report_uri": "s3://reports/drift/loan-default/2026/11/02/11/report.json",
            "window_start": "2026-11-02T11:00:00Z",
            "window_end": "2026-11-02T12:00:00Z",
            "status": "ok",
            "n_rows": 900,
            "dataset_drift": True,
            "drift_share": 0.25,
            "drifted_features": ["income"],
        },
    },
    "quality": {"checked_until": None, "last": None},
    "last_retraining": {"started_at": "2026-11-02T12:05:00Z", "execution_arn": "arn:exec"},
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def clients(endpoint_url: str | None = None, region: str | None = None) -> dict[str, Any]:
        seen.append(("clients", (endpoint_url, region)))
        return {"sagemaker": "SM", "s3": "S3", "dynamodb": "DDB"}

    def list_runs(sm: Any, group: str) -> list[dict[str, Any]]:
        seen.append(("list_runs", (sm, group)))
        return RUNS

    def status(sm: Any, s3: Any, ddb: Any, **kw: Any) -> dict[str, Any]:
        seen.append(("status", (sm, s3, ddb, kw)))
        return STATUS

    monkeypatch.setattr(ops, "clients", clients)
    monkeypatch.setattr(ops, "list_runs", list_runs)
    monkeypatch.setattr(ops, "status", status)
    return seen


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_runs_prints_a_table_newest_first(calls) -> None:
    # When runs are listed against a local moto server
    code, out, _ = run(
        "runs", "--model-package-group", "g", "--endpoint-url", "http://127.0.0.1:5555"
    )
    # Then the endpoint URL reached the clients, and one row per run came out in order
    assert code == 0
    assert calls[0] == ("clients", ("http://127.0.0.1:5555", None))
    assert calls[1] == ("list_runs", ("SM", "g"))
    lines = out.splitlines()
    assert lines[0].split() == [
        "version",
        "created",
        "approval",
        "decision",
        "metric",
        "challenger",
        "champion",
        "margin",
        "run_id",
    ]
    assert lines[1].split()[:4] == ["2", "2026-11-02T10:00:00", "Rejected", "reject"]
    assert lines[2].split()[-1] == "run-1" and "0.1" in lines[2]


def test_runs_json_and_limit(calls) -> None:
    code, out, _ = run("runs", "--model-package-group", "g", "--json", "--limit", "1")
    assert code == 0 and orjson.loads(out) == RUNS[:1]


def test_status_prints_serving_model_and_last_verdicts(calls) -> None:
    code, out, _ = run(
        "status",
        "--endpoint",
        "loan-default",
        "--state-table",
        "t",
        "--reports-bucket",
        "r",
        "--model-package-group",
        "g",
        "--region",
        "eu-west-1",
    )
    assert code == 0
    assert calls[0] == ("clients", (None, "eu-west-1"))
    assert calls[1][1][3] == {
        "endpoint": "loan-default",
        "state_table": "t",
        "reports_bucket": "r",
        "model_package_group": "g",
    }
    assert "loan-default (InService)" in out
    assert "1 (Approved, run run-1)" in out
    assert "DRIFT (income) in [2026-11-02T11:00:00Z, 2026-11-02T12:00:00Z)" in out
    assert "quality check" in out and "no report yet" in out
    assert "s3://reports/drift/loan-default/2026/11/02/11/report.json" in out
    assert "started 2026-11-02T12:05:00Z" in out


def test_status_json(calls) -> None:
    code, out, _ = run(
        "status", "--endpoint", "e", "--state-table", "t", "--reports-bucket", "r", "--json"
    )
    assert code == 0 and orjson.loads(out) == STATUS


def test_aws_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given boto3 that cannot reach the endpoint
    from botocore.exceptions import EndpointConnectionError

    def list_runs(sm: Any, group: str) -> list[dict[str, Any]]:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")

    monkeypatch.setattr(ops, "list_runs", list_runs)
    code, _, err = run(
        "runs",
        "--model-package-group",
        "g",
        "--endpoint-url",
        "http://127.0.0.1:1",
        "--region",
        "us-east-1",
    )
    # Then one line names where it tried
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("driftloop: error: http://127.0.0.1:1: Could not connect")


def test_ops_errors_pass_through(monkeypatch: pytest.MonkeyPatch, calls) -> None:
    from driftloop.errors import DriftloopError

    def list_runs(sm: Any, group: str) -> list[dict[str, Any]]:
        raise DriftloopError("model package group 'g': does not exist")

    monkeypatch.setattr(ops, "list_runs", list_runs)
    code, _, err = run("runs", "--model-package-group", "g")
    assert code == 2 and "does not exist" in err
