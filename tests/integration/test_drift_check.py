"""The scheduled drift check under moto: windows, reports, events, metrics and the checkpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest

from lambdas import _aws, drift_check
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
T0 = datetime(2026, 11, 1, tzinfo=UTC)  # the first window starts here
CKPT = f"checkpoint#drift#{ENDPOINT}"
N = 300  # rows per populated window


@pytest.fixture
def env(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    s3 = boto3.client("s3")
    for bucket in ("capture", "artifacts", "reports"):
        s3.create_bucket(Bucket=bucket)
    make_table()
    sink = event_sink("driftloop-bus")
    s3.put_object(
        Bucket="artifacts", Key="baselines/current/baseline.json", Body=loan_baseline().to_json()
    )
    values = {
        "CAPTURE_BUCKET": "capture",
        "CAPTURE_PREFIX": "capture",
        "ENDPOINT_NAME": ENDPOINT,
        "ARTIFACTS_BUCKET": "artifacts",
        "BASELINE_KEY": "baselines/current/baseline.json",
        "REPORTS_BUCKET": "reports",
        "STATE_TABLE": "state",
        "EVENT_BUS_NAME": "driftloop-bus",
        "WINDOW_HOURS": "1",
        "GRACE_MINUTES": "15",
        "DRIFT_CONFIG": json.dumps({"min_rows": 50}),
        "FIRST_WINDOW_START": "2026-11-01T00:00:00Z",
        "POWERTOOLS_SERVICE_NAME": "drift-check",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return {"sink": sink}


def put_capture(
    hour: int,
    n: int,
    *,
    shift: float = 0.0,
    variant: str = "AllTraffic",
    name: str = "part-0",
    seed: int | None = None,
    extra: bytes = b"",
) -> None:
    when = T0 + timedelta(hours=hour, minutes=7)
    rng = np.random.default_rng(seed if seed is not None else 100 + hour)
    body, _, _ = capture_lines(rng, n, when, shift=shift, id_prefix=f"{variant}-{hour}-{name}")
    key = f"capture/{ENDPOINT}/{variant}/{when:%Y/%m/%d/%H}/{name}.jsonl"
    boto3.client("s3").put_object(Bucket="capture", Key=key, Body=body + extra)


def run(hours_after_t0: float, context: FakeLambdaContext) -> dict[str, Any]:
    when = T0 + timedelta(hours=hours_after_t0)
    event = load_event("scheduled_event", time=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return drift_check.handler(event, context)


def report(hour: int) -> dict[str, Any]:
    key = f"drift/{ENDPOINT}/2026/11/01/{hour:02d}/report.json"
    return json.loads(boto3.client("s3").get_object(Bucket="reports", Key=key)["Body"].read())


def report_keys() -> list[str]:
    resp = boto3.client("s3").list_objects_v2(Bucket="reports", Prefix="drift/")
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_closed_windows_are_checked_reported_and_the_drifted_one_raises_an_event(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given three closed hourly windows: stable traffic over two variants, shifted income,
    # and no traffic at all; and an open fourth hour with traffic
    put_capture(0, N // 2, variant="AllTraffic")
    put_capture(0, N // 2, variant="Canary")
    put_capture(1, N, shift=3.0)
    put_capture(3, N)
    # When the scheduled check runs at 03:20
    summary = run(3 + 20 / 60, lambda_context)

    # Then the three closed windows are checked, oldest first, and the checkpoint is 03:00
    assert summary["status"] == "caught_up"
    assert [w["window_start"] for w in summary["windows"]] == [
        "2026-11-01T00:00:00Z",
        "2026-11-01T01:00:00Z",
        "2026-11-01T02:00:00Z",
    ]
    assert checkpoint("state", CKPT) == "2026-11-01T03:00:00Z"
    assert summary["windows_behind"] == 0
    # And each window has a JSON and an HTML report under its start hour
    assert report_keys() == [
        f"drift/{ENDPOINT}/2026/11/01/{h:02d}/report.{ext}"
        for h in (0, 1, 2)
        for ext in ("html", "json")
    ]
    stable, shifted, empty = report(0), report(1), report(2)
    assert stable["n_rows"] == N and stable["n_files"] == 2 and not stable["dataset_drift"]
    assert shifted["dataset_drift"] and "income" in shifted["drifted_features"]
    assert empty["status"] == "insufficient_data" and empty["n_rows"] == 0
    assert stable["window_start"] == "2026-11-01T00:00:00Z" and stable["endpoint"] == ENDPOINT

    # And exactly one Drift Detected event went out, for the shifted window
    events = received_events(env["sink"])
    assert [e["detail-type"] for e in events] == ["Drift Detected"]
    detail = events[0]["detail"]
    assert events[0]["source"] == "driftloop"
    assert detail["window_start"] == "2026-11-01T01:00:00Z"
    assert detail["window_end"] == "2026-11-01T02:00:00Z"
    assert detail["report_uri"] == f"s3://reports/drift/{ENDPOINT}/2026/11/01/01/report.json"
    assert "income" in detail["drifted_features"] and detail["n_rows"] == N
    assert detail["drift_share"] == pytest.approx(shifted["drift_share"])

    # And the metrics count every row once, flag one drifted window, one empty window,
    # and carry a per-feature score with a Feature dimension
    records = emf_records(capsys.readouterr().out)
    assert metric_values(records, "RowsChecked", Endpoint=ENDPOINT) == [N, N, 0]
    assert metric_values(records, "DriftDetected", Endpoint=ENDPOINT) == [0, 1, 0]
    assert metric_values(records, "InsufficientData", Endpoint=ENDPOINT) == [0, 0, 1]
    assert len(metric_values(records, "DriftShare", Endpoint=ENDPOINT)) == 2
    assert len(metric_values(records, "PredictionDriftScore", Endpoint=ENDPOINT)) == 2
    income_scores = metric_values(records, "FeatureDriftScore", Endpoint=ENDPOINT, Feature="income")
    assert len(income_scores) == 2 and income_scores[1] > income_scores[0]
    assert all(len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) <= 100 for d in records)
    assert metric_values(records, "WindowsChecked", Endpoint=ENDPOINT) == [3]


def test_a_run_failing_mid_way_then_a_rerun_skips_no_window_and_counts_none_twice(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given four closed windows with traffic, the second one drifted
    for hour in range(4):
        put_capture(hour, N, shift=3.0 if hour == 1 else 0.0)
    # And S3 failing on the second window's capture file during the first run
    real_download = _aws.download

    def flaky(bucket: str, key: str) -> Any:
        if "/2026/11/01/01/" in key:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, "GetObject")
        return real_download(bucket, key)

    monkeypatch.setattr(_aws, "download", flaky)
    # When the first run fails on that window
    with pytest.raises(Exception, match="SlowDown"):
        run(4.5, lambda_context)
    # Then only the first window is done and the checkpoint stops before the failed one
    assert checkpoint("state", CKPT) == "2026-11-01T01:00:00Z"
    assert report_keys() == [
        f"drift/{ENDPOINT}/2026/11/01/00/report.html",
        f"drift/{ENDPOINT}/2026/11/01/00/report.json",
    ]

    # When S3 recovers and the next scheduled run comes
    monkeypatch.setattr(_aws, "download", real_download)
    summary = run(5.25, lambda_context)
    # Then it resumes at the failed window and catches up
    assert [w["window_start"][11:13] for w in summary["windows"]] == ["01", "02", "03", "04"]
    assert checkpoint("state", CKPT) == "2026-11-01T05:00:00Z"
    # And over both runs every window was counted exactly once
    records = emf_records(capsys.readouterr().out)
    assert metric_values(records, "RowsChecked", Endpoint=ENDPOINT) == [N, N, N, N, 0]
    assert sum(metric_values(records, "DriftDetected", Endpoint=ENDPOINT)) == 1
    assert len(report_keys()) == 2 * 5
    assert [e["detail"]["window_start"] for e in received_events(env["sink"])] == [
        "2026-11-01T01:00:00Z"
    ]


def test_malformed_capture_lines_are_counted_not_fatal(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a window whose capture file holds good records and three bad lines,
    # and a second file that is not JSON at all
    put_capture(0, N, extra=b"{not json\n" + b'{"captureData": {}}\n' + b"\x00\x01\x02\n")
    boto3.client("s3").put_object(
        Bucket="capture",
        Body=b"garbage\n" * 5,
        Key=f"capture/{ENDPOINT}/AllTraffic/2026/11/01/00/junk.jsonl",
    )
    # When the check runs
    summary = run(1.5, lambda_context)
    # Then the window is checked on the good rows and the bad lines are counted
    assert summary["windows_checked"] == 1
    rep = report(0)
    assert rep["n_rows"] == N and rep["n_files"] == 2
    assert rep["malformed"]["total"] == 8
    assert any("junk.jsonl" in ex for ex in rep["malformed"]["examples"])
    records = emf_records(capsys.readouterr().out)
    assert metric_values(records, "MalformedRows", Endpoint=ENDPOINT) == [8]


def test_a_missing_baseline_is_logged_and_metered_and_the_checkpoint_stays(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given capture but no baseline object
    put_capture(0, N)
    boto3.client("s3").delete_object(Bucket="artifacts", Key="baselines/current/baseline.json")
    # When the check runs
    summary = run(2.5, lambda_context)
    # Then nothing is checked, the checkpoint does not advance, and the error is visible
    assert summary["status"] == "baseline_missing" and summary["windows_checked"] == 0
    assert checkpoint("state", CKPT) is None
    assert report_keys() == []
    out = capsys.readouterr().out
    assert metric_values(emf_records(out), "BaselineMissing", Endpoint=ENDPOINT) == [1]
    assert any(
        "baseline not found at s3://artifacts/baselines/current/baseline.json" in r.getMessage()
        and r.levelname == "ERROR"
        for r in caplog.records
    )


def test_a_corrupt_baseline_is_a_clear_error_naming_the_object(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
) -> None:
    boto3.client("s3").put_object(
        Bucket="artifacts", Key="baselines/current/baseline.json", Body=b"{oops"
    )
    with pytest.raises(
        drift_check.DriftloopError,
        match="s3://artifacts/baselines/current/baseline.json: corrupt JSON",
    ):
        run(2.5, lambda_context)
    assert checkpoint("state", CKPT) is None


def test_a_backlog_is_bounded_per_run_and_worked_off_by_the_next_runs(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given five closed windows and at most two windows per run
    monkeypatch.setenv("MAX_WINDOWS_PER_RUN", "2")
    for hour in range(5):
        put_capture(hour, 60)
    # When three runs happen at the same time
    first = run(5.5, lambda_context)
    second = run(5.5, lambda_context)
    third = run(5.5, lambda_context)
    # Then each takes the oldest windows left, and the backlog shrinks to zero
    assert (first["status"], first["windows_checked"], first["windows_behind"]) == (
        "max_windows",
        2,
        3,
    )
    assert (second["windows_checked"], second["windows_behind"]) == (2, 1)
    assert (third["status"], third["windows_checked"], third["windows_behind"]) == (
        "caught_up",
        1,
        0,
    )
    assert checkpoint("state", CKPT) == "2026-11-01T05:00:00Z"


def test_a_run_stops_before_the_lambda_time_limit(
    env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three closed windows and a Lambda with time left for only the first
    for hour in range(3):
        put_capture(hour, 60)
    context = FakeLambdaContext(remaining_ms=[900_000, 5_000])
    # When the check runs
    summary = run(3.5, context)
    # Then it stops cleanly after one window; the checkpoint marks where the next run starts
    assert summary["status"] == "out_of_time"
    assert summary["windows_checked"] == 1 and summary["windows_behind"] == 2
    assert checkpoint("state", CKPT) == "2026-11-01T01:00:00Z"


def test_a_concurrent_run_that_advanced_first_wins_and_the_loser_counts_nothing(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a window, and another run that finishes it while this run is computing it
    put_capture(0, N)
    real_check = drift_check.check_window

    def racing(*args: Any) -> Any:
        outcome = real_check(*args)
        assert _aws.advance_checkpoint("state", CKPT, None, T0 + timedelta(hours=1))
        return outcome

    monkeypatch.setattr(drift_check, "check_window", racing)
    # When this run tries to advance the checkpoint
    summary = run(1.5, lambda_context)
    # Then it stops without counting the window: no window metrics from the loser
    assert summary["status"] == "concurrent_run" and summary["windows_checked"] == 0
    assert metric_values(emf_records(capsys.readouterr().out), "RowsChecked") == []
    assert checkpoint("state", CKPT) == "2026-11-01T01:00:00Z"


def test_without_a_checkpoint_or_first_start_only_the_last_closed_window_is_checked(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FIRST_WINDOW_START")
    summary = run(6.5, lambda_context)
    assert [w["window_start"] for w in summary["windows"]] == ["2026-11-01T05:00:00Z"]


def test_bad_environment_is_a_clear_error(
    env: dict[str, Any],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WINDOW_HOURS", "hourly")
    with pytest.raises(_aws.ConfigError, match="WINDOW_HOURS must be a whole number"):
        run(1.5, lambda_context)
    monkeypatch.setenv("WINDOW_HOURS", "1")
    monkeypatch.setenv("DRIFT_CONFIG", "[1]")
    with pytest.raises(_aws.ConfigError, match="DRIFT_CONFIG must be a JSON object"):
        run(1.5, lambda_context)
