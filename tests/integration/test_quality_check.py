"""The scheduled quality check under moto: late labels, the join, reports, events, metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest

from driftloop.quality import encode_ground_truth
from lambdas import quality_check
from tests.integration.conftest import (
    FakeLambdaContext,
    capture_lines,
    checkpoint,
    emf_records,
    event_sink,
    load_event,
    loan_baseline,
    make_table,
    metric_values,
    received_events,
)

ENDPOINT = "loan-default"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CKPT = f"checkpoint#quality#{ENDPOINT}"
N = 200


@pytest.fixture
def env(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    s3 = boto3.client("s3")
    for bucket in ("capture", "truth", "artifacts", "reports"):
        s3.create_bucket(Bucket=bucket)
    make_table()
    sink = event_sink("driftloop-bus")
    s3.put_object(
        Bucket="artifacts",
        Key="baselines/current/baseline.json",
        Body=loan_baseline(metrics={"auc": 0.85, "accuracy": 0.8}).to_json(),
    )
    values = {
        "CAPTURE_BUCKET": "capture",
        "CAPTURE_PREFIX": "capture",
        "ENDPOINT_NAME": ENDPOINT,
        "GROUND_TRUTH_BUCKET": "truth",
        "GROUND_TRUTH_PREFIX": "ground-truth",
        "ARTIFACTS_BUCKET": "artifacts",
        "BASELINE_KEY": "baselines/current/baseline.json",
        "REPORTS_BUCKET": "reports",
        "STATE_TABLE": "state",
        "EVENT_BUS_NAME": "driftloop-bus",
        "WINDOW_HOURS": "1",
        "GRACE_MINUTES": "15",
        "LABEL_DELAY_HOURS": "2",
        "QUALITY_CONFIG": json.dumps({"min_labels": 50, "max_drop": 0.05}),
        "FIRST_WINDOW_START": "2026-11-01T00:00:00Z",
        "POWERTOOLS_SERVICE_NAME": "quality-check",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return {"sink": sink}


def put_window(
    hour: int, *, good: bool, inference_ids: bool = False
) -> tuple[list[str], list[float]]:
    """Capture N predictions in hour `hour`; returns their row ids and scores."""
    rng = np.random.default_rng(10 + hour)
    when = T0 + timedelta(hours=hour, minutes=5)
    body, ids, scores = capture_lines(
        rng, N, when, id_prefix=f"h{hour}", inference_ids=inference_ids
    )
    key = f"capture/{ENDPOINT}/AllTraffic/{when:%Y/%m/%d/%H}/part-0.jsonl"
    boto3.client("s3").put_object(Bucket="capture", Key=key, Body=body)
    return ids, scores


def labels_for(
    ids: list[str], scores: list[float], *, good: bool, seed: int
) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    if good:  # the model is right 95% of the time
        y = [int(s >= 0.5) ^ int(rng.random() < 0.05) for s in scores]
    else:  # the world changed: labels no longer follow the score
        y = [int(rng.random() < 0.5) for _ in scores]
    return list(zip(ids, y, strict=True))


def put_labels(hour: int, pairs: list[tuple[str, int]], name: str = "labels") -> None:
    when = T0 + timedelta(hours=hour, minutes=30)
    body = b"".join(encode_ground_truth(rid, y) for rid, y in pairs)
    key = f"ground-truth/{ENDPOINT}/{when:%Y/%m/%d/%H}/{name}.jsonl"
    boto3.client("s3").put_object(Bucket="truth", Key=key, Body=body)


def run(hours_after_t0: float, context: FakeLambdaContext) -> dict[str, Any]:
    when = T0 + timedelta(hours=hours_after_t0)
    return quality_check.handler(
        load_event("scheduled_event", time=when.strftime("%Y-%m-%dT%H:%M:%SZ")), context
    )


def report(hour: int) -> dict[str, Any]:
    key = f"quality/{ENDPOINT}/2026/11/01/{hour:02d}/report.json"
    return json.loads(boto3.client("s3").get_object(Bucket="reports", Key=key)["Body"].read())


def test_windows_wait_for_the_label_delay_then_join_late_labels_and_flag_degradation(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a good window at 00:00 (labels keyed by inferenceId) and a degraded one at 01:00
    ids0, scores0 = put_window(0, good=True, inference_ids=True)
    ids1, scores1 = put_window(1, good=False)
    labels0 = labels_for(ids0, scores0, good=True, seed=1)
    labels1 = labels_for(ids1, scores1, good=False, seed=2)
    # And labels arriving late: most within the two-hour delay, 20 of window 0's too late
    put_labels(1, labels0[:150])
    put_labels(2, labels0[150:180] + labels1[:100])
    put_labels(3, labels1[100:])
    put_labels(4, labels0[180:])

    # When the check runs at 03:10: no window is old enough (00:00-01:00 is due at 03:15)
    early = run(3 + 10 / 60, lambda_context)
    assert early["windows_checked"] == 0 and checkpoint("state", CKPT) is None
    # And again at 04:20
    summary = run(4 + 20 / 60, lambda_context)

    # Then both windows are checked and the checkpoint is 02:00
    assert [w["window_start"][11:13] for w in summary["windows"]] == ["00", "01"]
    assert checkpoint("state", CKPT) == "2026-11-01T02:00:00Z"
    good, bad = report(0), report(1)
    # And the good window joined the labels that arrived within the delay only
    assert good["status"] == "ok" and not good["degraded"]
    assert good["n_matched"] == 180 and good["n_unlabelled"] == 20
    assert good["labels_until"] == "2026-11-01T03:00:00Z"
    assert good["metrics"]["auc"]["baseline"] == 0.85
    # And the degraded window is flagged, its labels matched by eventId
    assert bad["status"] == "ok" and bad["degraded"] and bad["n_matched"] == N
    assert bad["metrics"]["auc"]["drop"] > 0.05
    # And an HTML page sits next to each JSON report
    html = (
        boto3.client("s3")
        .get_object(Bucket="reports", Key=f"quality/{ENDPOINT}/2026/11/01/01/report.html")["Body"]
        .read()
    )
    assert b"DEGRADED" in html

    # And one Quality Degraded event carries the metrics, baseline metrics and drop
    events = received_events(env["sink"])
    assert [e["detail-type"] for e in events] == ["Quality Degraded"]
    detail = events[0]["detail"]
    assert detail["window_start"] == "2026-11-01T01:00:00Z" and detail["n_rows"] == N
    assert detail["metrics"]["auc"] == pytest.approx(bad["metrics"]["auc"]["current"])
    assert detail["baseline_metrics"]["auc"] == 0.85
    assert detail["drop"]["auc"] == pytest.approx(bad["metrics"]["auc"]["drop"])
    assert detail["report_uri"] == f"s3://reports/quality/{ENDPOINT}/2026/11/01/01/report.json"

    # And the metrics count matched labels and the degraded window once each
    records = emf_records(capsys.readouterr().out)
    assert metric_values(records, "LabelsMatched", Endpoint=ENDPOINT) == [180, N]
    assert metric_values(records, "PredictionsUnlabelled", Endpoint=ENDPOINT) == [20, 0]
    assert metric_values(records, "QualityDegraded", Endpoint=ENDPOINT) == [0, 1]
    auc = metric_values(records, "ModelQuality", Endpoint=ENDPOINT, Metric="auc")
    assert len(auc) == 2 and auc[0] > 0.85 > auc[1]


def test_a_window_without_labels_is_insufficient_data_and_the_checkpoint_advances(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given predictions but no labels at all, and a corrupt ground-truth file
    put_window(0, good=True)
    boto3.client("s3").put_object(
        Bucket="truth", Body=b"{bad\n", Key=f"ground-truth/{ENDPOINT}/2026/11/01/01/x.jsonl"
    )
    # When the check runs after the delay
    summary = run(3.5, lambda_context)
    # Then the window is reported as insufficient data, not degraded, and it moves on
    assert summary["windows_checked"] == 1
    rep = report(0)
    assert rep["status"] == "insufficient_data" and not rep["degraded"]
    assert rep["n_unlabelled"] == N and rep["malformed"]["by_reason"] == {"invalid_json": 1}
    assert checkpoint("state", CKPT) == "2026-11-01T01:00:00Z"
    assert received_events(env["sink"]) == []
    records = emf_records(capsys.readouterr().out)
    assert metric_values(records, "InsufficientData", Endpoint=ENDPOINT) == [1]
    assert metric_values(records, "MalformedRows", Endpoint=ENDPOINT) == [1]


def test_a_baseline_without_the_watched_metric_stops_before_any_window(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a baseline that stores no training-time AUC
    boto3.client("s3").put_object(
        Bucket="artifacts",
        Key="baselines/current/baseline.json",
        Body=loan_baseline(metrics={"accuracy": 0.8}).to_json(),
    )
    put_window(0, good=True)
    # When the check runs
    summary = run(3.5, lambda_context)
    # Then it reports the problem and keeps the checkpoint
    assert summary["status"] == "baseline_metric_missing" and summary["metric"] == "auc"
    assert checkpoint("state", CKPT) is None
    assert metric_values(emf_records(capsys.readouterr().out), "BaselineMissing") == [1]


def test_bad_quality_config_is_a_clear_error(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUALITY_CONFIG", json.dumps({"metric": "auc", "max_drop": -1}))
    with pytest.raises(quality_check._aws.ConfigError, match="QUALITY_CONFIG.*max_drop"):
        run(3.5, lambda_context)
