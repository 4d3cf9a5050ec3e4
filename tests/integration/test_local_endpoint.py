"""The local endpoint over HTTP: SageMaker's serving contract and data capture read back exactly."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from threadpoolctl import threadpool_limits

from driftloop.capture import capture_key, read_capture
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.local.endpoint import CaptureSettings, LocalEndpoint
from driftloop.local.training import pack_tar
from driftloop.schema import Schema
from training import train
from training.datagen import FEATURES, schema_dict, training_set

# One worker runs this module, so its module-scoped model is built once.
pytestmark = pytest.mark.xdist_group("local-endpoint")

SCHEMA = Schema.from_dict(schema_dict())
CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://capture-bucket/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {
        "CsvContentTypes": ["text/csv"],
        "JsonContentTypes": ["application/json"],
    },
}


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="capture-bucket")
        client.create_bucket(Bucket="artifacts")
        yield client


def _train_tar(root: Path, seed: int, threshold: str = "0.5") -> Path:
    data = root / f"data-{seed}"
    data.mkdir(parents=True)
    training_set(1500, seed=seed).to_csv(data / "train.csv", index=False)
    argv = ["--train", str(data / "train.csv"), "--model-dir", str(root / f"model-{seed}"),
            "--output-data-dir", str(root / f"out-{seed}"), "--max-iter", "40",
            "--threshold", threshold]  # fmt: skip
    with threadpool_limits(limits=1, user_api="openmp"), contextlib.redirect_stdout(io.StringIO()):
        assert train.main(argv) == 0
    return pack_tar(root / f"model-{seed}", root / f"model-{seed}.tar.gz")


@pytest.fixture(scope="module")
def model_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_tar(tmp_path_factory.mktemp("model"), seed=61)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return training_set(20, seed=62)[list(FEATURES)]


class StepClock:
    """A simulated clock: each call moves `step` forward (thread-safe)."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step, self.lock = start, step, threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            now, self.now = self.now, self.now + self.step
            return now


def _csv(frame: pd.DataFrame) -> bytes:
    lines = (",".join(str(v) for v in row) for row in frame.itertuples(index=False))
    return "\n".join(lines).encode()


def _post(
    url: str, body: bytes, ctype: str, accept: str | None = None, inference_id: str | None = None
) -> tuple[int, str, bytes]:
    headers = {"Content-Type": ctype}
    if accept:
        headers["Accept"] = accept
    if inference_id:
        headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
    request = urllib.request.Request(url + "/invocations", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def _read_back(s3: Any, prefix: str) -> tuple[list[Any], MalformedLog, list[str], list[bytes]]:
    """Every capture file under the prefix, through driftloop's reader."""
    keys = sorted(
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="capture-bucket", Prefix=prefix
        )
        for o in page.get("Contents", ())
    )
    malformed = MalformedLog()
    batches, lines = [], []
    for key in keys:
        body = s3.get_object(Bucket="capture-bucket", Key=key)["Body"].read()
        lines.extend(body.splitlines())
        batches.extend(read_capture(io.BytesIO(body), schema=SCHEMA, malformed=malformed, name=key))
    return batches, malformed, keys, lines


def test_ping_and_unknown_paths(model_tar: Path) -> None:
    with LocalEndpoint(model_tar) as endpoint:
        assert endpoint.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(endpoint.url + "/ping") as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(endpoint.url + "/nothing")
        assert info.value.code == 404


def test_csv_and_json_single_and_multi_row(model_tar: Path, rows: pd.DataFrame) -> None:
    with LocalEndpoint(model_tar) as endpoint:
        expected = endpoint.model.model.pipeline.predict_proba(rows)[:, 1]
        # CSV in, CSV out, many rows: one `score,label` line per row
        status, ctype, body = _post(endpoint.url, _csv(rows), "text/csv", "text/csv")
        assert (status, ctype) == (200, "text/csv")
        scores = [float(line.split(b",")[0]) for line in body.splitlines()]
        np.testing.assert_allclose(scores, expected, rtol=1e-6)
        # CSV in, one row, JSON out (the default for Accept */*)
        status, ctype, body = _post(endpoint.url, _csv(rows.iloc[:1]), "text/csv", "*/*")
        assert (status, ctype) == (200, "application/json")
        assert json.loads(body)["predictions"][0]["score"] == pytest.approx(expected[0])
        # JSON instances in, JSON out, many rows
        payload = json.dumps({"instances": rows.astype(object).to_numpy().tolist()}).encode()
        status, ctype, body = _post(endpoint.url, payload, "application/json", "application/json")
        predictions = json.loads(body)["predictions"]
        assert status == 200 and len(predictions) == len(rows)
        np.testing.assert_allclose([p["score"] for p in predictions], expected, rtol=1e-9)
        # JSON object in, CSV out
        one = json.dumps(rows.iloc[0].to_dict()).encode()
        status, ctype, body = _post(endpoint.url, one, "application/json", "text/csv")
        assert (status, ctype) == (200, "text/csv") and body.count(b"\n") == 0


@pytest.mark.parametrize(
    ("body", "ctype", "accept", "status", "message"),
    [
        (b"1,2,3", "text/csv", None, 400, "row 0: expected 12 columns"),
        (b"42,lots,1,2,3,4,5,6,car,rent,north,salaried", "text/csv", None, 400,
         "'income' must be a number, got 'lots'"),
        (b"{oops", "application/json", None, 400, "unreadable JSON"),
        (b"", "text/csv", None, 400, "no rows"),
        (b"\x00\x01", "application/x-image", None, 415, "unsupported Content-Type"),
        (b"42,1,1,2,3,4,5,6,car,rent,north,salaried", "text/csv", "image/png", 406,
         "unsupported Accept"),
    ],
)  # fmt: skip
def test_bad_payloads_get_4xx_with_a_clear_message_and_are_not_captured(
    s3: Any, model_tar: Path, body: bytes, ctype: str, accept: str | None, status: int,
    message: str,
) -> None:  # fmt: skip
    capture = {**CAPTURE, "DestinationS3Uri": "s3://capture-bucket/bad"}
    with LocalEndpoint(model_tar, s3_client=s3, capture_config=capture) as endpoint:
        got, ctype_out, text = _post(endpoint.url, body, ctype, accept)
        assert got == status and ctype_out == "text/plain"
        assert message in text.decode() and "Traceback" not in text.decode()
    stats = endpoint.stats()
    assert stats["errors"] == {status: 1} and stats["sampled"] == 0
    assert stats["capture_files"] == []


def test_full_capture_reads_back_one_record_per_request_in_the_hour_layout(
    s3: Any, model_tar: Path, rows: pd.DataFrame
) -> None:
    # Given a simulated clock that moves 7 minutes per request, across several hours
    clock = StepClock(datetime(2026, 3, 1, 22, 50, tzinfo=UTC), timedelta(minutes=7))
    capture = {**CAPTURE, "DestinationS3Uri": "s3://capture-bucket/full"}
    sent_rows = 0
    with LocalEndpoint(
        model_tar, s3_client=s3, capture_config=capture, endpoint_name="loans",
        variant_name="blue", clock=clock, flush_records=10_000,
    ) as endpoint:  # fmt: skip
        # When 30 requests of 1-3 rows go in, half CSV and half JSON, some with InferenceIds
        for i in range(30):
            part = rows.iloc[i % 17 : i % 17 + 1 + i % 3]
            sent_rows += len(part)
            if i % 2:
                payload = json.dumps({"instances": part.astype(object).to_numpy().tolist()})
                status, _, _ = _post(endpoint.url, payload.encode(), "application/json",
                                     "application/json", inference_id=f"inf-{i}")  # fmt: skip
            else:
                status, _, _ = _post(endpoint.url, _csv(part), "text/csv", "text/csv")
            assert status == 200
    # Then every request is one capture line, the reader finds every row and nothing malformed
    batches, malformed, keys, lines = _read_back(s3, "full/")
    assert malformed.total == 0, malformed.to_dict()
    assert len(lines) == 30 == endpoint.stats()["sampled"]
    assert sum(b.n_rows for b in batches) == sent_rows
    assert all(b.predictions is not None and np.isfinite(b.predictions).all() for b in batches)
    inference_ids = {i for b in batches for i in (b.inference_ids or []) if i is not None}
    assert inference_ids == {f"inf-{i}" for i in range(1, 30, 2)}
    # And files sit in the folder of their records' hour: 30 x 7 min from 22:50 spans 5 hours
    hours = set()
    for line in lines:
        record = json.loads(line)
        when = datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
        hours.add(when.strftime("%Y/%m/%d/%H"))
        assert record["captureData"]["endpointInput"]["encoding"] in ("CSV", "JSON")
    assert len(hours) == 5
    assert {k.split("/")[4:8] and "/".join(k.split("/")[3:7]) for k in keys} == hours
    for key in keys:
        assert key.startswith("full/loans/blue/") and key.endswith(".jsonl")
        stem = key.rsplit("/", 1)[1][: -len(".jsonl")]
        when = datetime.strptime("/".join(key.split("/")[3:7]), "%Y/%m/%d/%H").replace(tzinfo=UTC)
        assert capture_key("full", "loans", "blue", when, stem) == key


def test_half_sampling_captures_exactly_the_requests_it_sampled(
    s3: Any, model_tar: Path, rows: pd.DataFrame
) -> None:
    capture = {**CAPTURE, "InitialSamplingPercentage": 50,
               "DestinationS3Uri": "s3://capture-bucket/half"}  # fmt: skip
    with LocalEndpoint(model_tar, s3_client=s3, capture_config=capture, seed=5) as endpoint:
        for _ in range(100):
            assert _post(endpoint.url, _csv(rows.iloc[:1]), "text/csv")[0] == 200
    stats = endpoint.stats()
    _, malformed, _, lines = _read_back(s3, "half/")
    assert malformed.total == 0
    assert len(lines) == stats["sampled"] == stats["capture_records_written"]
    assert 25 <= stats["sampled"] <= 75  # Binomial(100, 0.5): 5 sd either side
    assert stats["invocations"] == 100


@pytest.mark.slow
def test_concurrent_requests_lose_nothing(s3: Any, model_tar: Path, rows: pd.DataFrame) -> None:
    # Given 8 client threads x 50 requests and a small flush size (many concurrent flushes)
    capture = {**CAPTURE, "DestinationS3Uri": "s3://capture-bucket/busy"}
    statuses: list[int] = []
    lock = threading.Lock()
    with LocalEndpoint(model_tar, s3_client=s3, capture_config=capture, flush_records=37) as ep:

        def client(k: int) -> None:
            for i in range(50):
                status = _post(ep.url, _csv(rows.iloc[(k + i) % 20 :][:1]), "text/csv",
                               inference_id=f"c{k}-{i}")[0]  # fmt: skip
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # Then every request succeeded and exactly one capture record exists for each
    assert statuses == [200] * 400
    batches, malformed, keys, lines = _read_back(s3, "busy/")
    assert malformed.total == 0 and len(lines) == 400 and len(keys) >= 10
    ids = [i for b in batches for i in (b.inference_ids or [])]
    assert sorted(ids) == sorted(f"c{k}-{i}" for k in range(8) for i in range(50))
    event_ids = [json.loads(line)["eventMetadata"]["eventId"] for line in lines]
    assert len(set(event_ids)) == 400


def test_stop_flushes_what_the_buffer_holds(s3: Any, model_tar: Path, rows: pd.DataFrame) -> None:
    capture = {**CAPTURE, "DestinationS3Uri": "s3://capture-bucket/late"}
    endpoint = LocalEndpoint(model_tar, s3_client=s3, capture_config=capture,
                             flush_records=10_000, flush_seconds=3600)  # fmt: skip
    endpoint.start()
    for _ in range(7):
        _post(endpoint.url, _csv(rows.iloc[:2]), "text/csv")
    assert s3.list_objects_v2(Bucket="capture-bucket", Prefix="late/")["KeyCount"] == 0
    assert endpoint.writer is not None and endpoint.writer.records_buffered == 7
    endpoint.close()
    assert len(_read_back(s3, "late/")[3]) == 7


def test_capture_without_content_type_header_is_base64_and_input_only(
    s3: Any, model_tar: Path, rows: pd.DataFrame
) -> None:
    capture = {"InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://capture-bucket/b64",
               "CaptureOptions": [{"CaptureMode": "Input"}]}  # fmt: skip
    with LocalEndpoint(model_tar, s3_client=s3, capture_config=capture) as endpoint:
        _post(endpoint.url, _csv(rows.iloc[:3]), "text/csv", "text/csv")
    batches, malformed, _, lines = _read_back(s3, "b64/")
    record = json.loads(lines[0])
    assert record["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert "endpointOutput" not in record["captureData"]
    assert malformed.total == 0 and sum(b.n_rows for b in batches) == 3


def test_swap_model_serves_the_new_model_and_captures_under_the_new_variant(
    s3: Any, model_tar: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    # Given a second model (always label 1: threshold near 0) uploaded to S3
    green = _train_tar(tmp_path, seed=63, threshold="0.0001")
    s3.upload_file(str(green), "artifacts", "models/green/output/model.tar.gz")
    capture = {**CAPTURE, "DestinationS3Uri": "s3://capture-bucket/swap"}
    with LocalEndpoint(model_tar, s3_client=s3, capture_config=capture, endpoint_name="ep",
                       variant_name="blue") as endpoint:  # fmt: skip
        before = _post(endpoint.url, _csv(rows.iloc[:5]), "text/csv", "text/csv")[2]
        # When the endpoint swaps to the green model from its S3 URI
        old = endpoint.swap_model("s3://artifacts/models/green/output/model.tar.gz",
                                  variant_name="green")  # fmt: skip
        after = _post(endpoint.url, _csv(rows.iloc[:5]), "text/csv", "text/csv")[2]
    # Then answers come from the new model and capture goes to the new variant's folder
    assert old.source == str(model_tar)
    assert [line.split(b",")[1] for line in after.splitlines()] == [b"1"] * 5
    assert before != after
    keys = _read_back(s3, "swap/")[2]
    assert {k.split("/")[2] for k in keys} == {"blue", "green"}


def test_sagemaker_runtime_client_works_against_the_endpoint(
    model_tar: Path, rows: pd.DataFrame
) -> None:
    with LocalEndpoint(model_tar, endpoint_name="loans") as endpoint:
        runtime = boto3.client("sagemaker-runtime", region_name="us-east-1",
                               endpoint_url=endpoint.url)  # fmt: skip
        response = runtime.invoke_endpoint(
            EndpointName="loans", Body=_csv(rows.iloc[:2]), ContentType="text/csv",
            Accept="application/json", InferenceId="abc",
        )  # fmt: skip
        assert response["ContentType"] == "application/json"
        assert response["InvokedProductionVariant"] == "AllTraffic"
        assert len(json.loads(response["Body"].read())["predictions"]) == 2
        # A container 400 surfaces as the runtime's ModelError with the original status
        with pytest.raises(ClientError) as info:
            runtime.invoke_endpoint(EndpointName="loans", Body=b"1,2", ContentType="text/csv")
        assert info.value.response["Error"]["Code"] == "ModelError"
        assert info.value.response["OriginalStatusCode"] == 400
        assert "expected 12 columns" in info.value.response["OriginalMessage"]
        with pytest.raises(ClientError, match="not found"):
            runtime.invoke_endpoint(EndpointName="other", Body=b"1", ContentType="text/csv")


def test_bad_configuration_is_a_clear_error(model_tar: Path, tmp_path: Path) -> None:
    with pytest.raises(DriftloopError, match="InitialSamplingPercentage 120"):
        CaptureSettings.from_config({**CAPTURE, "InitialSamplingPercentage": 120})
    with pytest.raises(DriftloopError, match="CaptureMode"):
        CaptureSettings.from_config({**CAPTURE, "CaptureOptions": []})
    with pytest.raises(DriftloopError, match="not an S3 URI"):
        CaptureSettings.from_config({**CAPTURE, "DestinationS3Uri": "/tmp/capture"})
    with pytest.raises(DriftloopError, match="needs an s3 client"):
        LocalEndpoint(model_tar, capture_config=CAPTURE)
    with pytest.raises(DriftloopError, match="outside 127.0.0.0/8"):
        LocalEndpoint(model_tar, host="0.0.0.0")
    with pytest.raises(DriftloopError, match="no such model"):
        LocalEndpoint(tmp_path / "missing.tar.gz")
    bare = tmp_path / "bare.tar.gz"
    with tarfile.open(bare, "w:gz") as tar:
        tar.add(__file__, arcname="model.joblib")
    with pytest.raises(DriftloopError, match="no code/inference.py"):
        LocalEndpoint(bare)
