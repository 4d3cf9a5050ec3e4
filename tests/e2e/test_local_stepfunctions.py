"""The pieces the local loop plays AWS with: template intrinsics and Step Functions semantics.

Pure and fast (no moto, no CDK): they sit with the closed-loop test because they are the
local runtime's stand-ins for CloudFormation and Step Functions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from driftloop.errors import DriftloopError
from driftloop.local.loop import (
    DemoOptions,
    TemplateResolver,
    _set_path,
    choice_matches,
    json_path,
    main_path,
    moto_compatible,
    render_parameters,
)

DOC: dict[str, Any] = {
    "run_id": "r1",
    "decision": {"deploy": True, "margin": 0.05},
    "snapshot": {"train_uri": "s3://d/t.csv"},
    "items": [{"x": 1}],
}


def test_json_paths_and_result_paths() -> None:
    # Given a state document, When paths are read, Then values come back or a clear error
    assert json_path(DOC, "$") is DOC
    assert json_path(DOC, "$.decision.deploy") is True
    assert json_path(DOC, "$.items[0].x") == 1
    assert json_path({}, "$$.Execution.Id", {"Execution": {"Id": "arn"}}) == "arn"
    with pytest.raises(DriftloopError, match=r"\$.nope not found"):
        json_path(DOC, "$.nope")
    # And ResultPath sets, replaces or discards without touching the input
    out = _set_path(DOC, "$.training_job.name", "job")
    assert out["training_job"] == {"name": "job"} and "training_job" not in DOC
    assert _set_path(DOC, None, {"ignored": 1}) is DOC
    assert _set_path(DOC, "$", {"new": 1}) == {"new": 1}


def test_parameters_render_paths_and_intrinsics() -> None:
    # Given Parameters as the CDK writes them
    params = {
        "TrainingJobName.$": "$.run_id",
        "InputDataConfig": [{"S3Uri.$": "$.snapshot.train_uri", "ContentType": "text/csv"}],
        "Name.$": "States.Format('{}-eval-{}', $.run_id, $.decision.margin)",
        "Json.$": "States.JsonToString($.decision)",
    }
    # When rendered, Then ".$" keys are resolved and plain values kept
    out = render_parameters(params, DOC, {})
    assert out["TrainingJobName"] == "r1"
    assert out["InputDataConfig"] == [{"S3Uri": "s3://d/t.csv", "ContentType": "text/csv"}]
    assert out["Name"] == "r1-eval-0.05"
    assert out["Json"] == '{"deploy":true,"margin":0.05}'


def test_choice_rules() -> None:
    # Given the Gate and DeploymentFinished rules, Then they match as Step Functions does
    assert choice_matches({"Variable": "$.decision.deploy", "BooleanEquals": True}, DOC)
    assert not choice_matches({"Variable": "$.decision.deploy", "BooleanEquals": False}, DOC)
    assert not choice_matches({"Variable": "$.deployment.status", "StringEquals": "x"}, DOC)
    assert choice_matches({"Variable": "$.deployment", "IsPresent": False}, DOC)
    assert choice_matches(
        {
            "And": [
                {"Variable": "$.decision.margin", "NumericGreaterThan": 0},
                {"Not": {"Variable": "$.run_id", "StringEquals": "r2"}},
            ]
        },
        DOC,
    )
    with pytest.raises(DriftloopError, match="StringMatches"):
        choice_matches({"Variable": "$.run_id", "StringMatches": "r*"}, DOC)


def test_main_path_follows_next_then_the_first_choice() -> None:
    # Given a workflow with a gate, a wait loop and a failure branch
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Task", "Next": "Gate", "Catch": [{"Next": "Fail"}]},
            "Gate": {"Type": "Choice", "Choices": [{"Next": "Deploy"}], "Default": "Reject"},
            "Reject": {"Type": "Task", "Next": "Notify"},
            "Deploy": {"Type": "Task", "Next": "Wait"},
            "Wait": {"Type": "Wait", "Next": "Check"},
            "Check": {"Type": "Task", "Next": "Done?"},
            "Done?": {"Type": "Choice", "Choices": [{"Next": "Wait"}], "Default": "Notify"},
            "Notify": {"Type": "Task", "End": True},
            "Fail": {"Type": "Fail"},
        },
    }
    # When its main path is listed, Then the success path comes first, each state once
    assert main_path(definition) == [
        "A",
        "Gate",
        "Deploy",
        "Wait",
        "Check",
        "Done?",
        "Notify",
        "Reject",
    ]


def test_template_intrinsics_resolve_to_local_names() -> None:
    # Given refs, attributes, exports and a mapping the loop registered
    r = TemplateResolver("eu-west-1")
    r.refs[("S", "Bucket")] = "my-bucket"
    r.attrs[("S", "Fn")]["Arn"] = "arn:aws:lambda:eu-west-1:123456789012:function:f"
    r.exports["Stateful-Key"] = "arn:key"
    r.mappings["S"] = {"Images": {"eu-west-1": {"uri": "img"}}}
    value = {
        "A": {"Fn::Join": ["", ["s3://", {"Ref": "Bucket"}, "/x"]]},
        "B": {"Fn::GetAtt": ["Fn", "Arn"]},
        "C": {"Fn::ImportValue": "Stateful-Key"},
        "D": {"Fn::Sub": "${AWS::Region}:${Bucket}:${Fn.Arn}"},
        "E": {"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "uri"]},
        "F": {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]},
    }
    # When resolved, Then every intrinsic becomes the local value
    assert r.resolve(value, "S") == {
        "A": "s3://my-bucket/x",
        "B": "arn:aws:lambda:eu-west-1:123456789012:function:f",
        "C": "arn:key",
        "D": "eu-west-1:my-bucket:arn:aws:lambda:eu-west-1:123456789012:function:f",
        "E": "img",
        "F": "b",
    }
    # And an unknown reference is a clear error naming it
    with pytest.raises(DriftloopError, match="Ref to Missing"):
        r.resolve({"Ref": "Missing"}, "S")
    with pytest.raises(DriftloopError, match="Fn::If"):
        r.resolve({"Fn::If": ["c", 1, 2]}, "S")


def test_moto_compatible_only_renames_kms_tags() -> None:
    # Given a template with a tagged KMS key and a tagged bucket
    template = {
        "Resources": {
            "K": {"Type": "AWS::KMS::Key", "Properties": {"Tags": [{"Key": "p", "Value": "d"}]}},
            "B": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": [{"Key": "p", "Value": "d"}]}},
        }
    }
    # When made moto-compatible, Then only the key's tags change spelling, on a copy
    out = moto_compatible(template)
    assert out["Resources"]["K"]["Properties"]["Tags"] == [{"TagKey": "p", "TagValue": "d"}]
    assert out["Resources"]["B"] == template["Resources"]["B"]
    assert template["Resources"]["K"]["Properties"]["Tags"][0] == {"Key": "p", "Value": "d"}


def test_demo_options_are_validated() -> None:
    # Given options, Then the timeline is at least two weeks and the onset leaves room
    assert DemoOptions().onset == 7
    assert DemoOptions().onset_time == datetime(2026, 1, 8, tzinfo=UTC)
    with pytest.raises(DriftloopError, match="--days must be at least 14"):
        DemoOptions(days=10)
    with pytest.raises(DriftloopError, match="onset day 13"):
        DemoOptions(days=14, onset_day=13)
    with pytest.raises(DriftloopError, match="requests-per-day"):
        DemoOptions(requests_per_day=5)
