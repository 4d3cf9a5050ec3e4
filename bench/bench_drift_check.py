"""Benchmark: the drift-check Lambda handler end to end on one window of capture, under moto.

What a scheduled run costs: list the window's capture files, download each one, stream
it through the reader and profiler, merge, compare, write report.json + report.html, put
the event, advance the checkpoint, print the EMF metrics. S3, DynamoDB and EventBridge are
moto in-process, so the figure is the handler's own CPU cost plus moto's (in AWS, S3
downloads run at network speed instead). Prints rows/s and the peak RSS.

    .venv/bin/python bench/bench_drift_check.py --records 300000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_capture  # noqa: E402

from driftloop.batch import FeatureBatch  # noqa: E402
from driftloop.profile import build_baseline  # noqa: E402
from driftloop.schema import Schema  # noqa: E402


class Context:
    """The Lambda context attributes Powertools and the handler read (15 minutes left)."""

    function_name = "bench-drift-check"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-drift-check"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def baseline_bytes(n: int) -> bytes:
    num, cats, score = gen_capture.sample(n, seed=1)
    num_names, cat_names = gen_capture.feature_names()
    columns: dict[str, np.ndarray] = {name: num[:, j] / 100.0 for j, name in enumerate(num_names)}
    for j, name in enumerate(cat_names):
        values = np.array(gen_capture.CATEGORIES[j], dtype=object)
        columns[name] = values[cats[:, j]]
    batch = FeatureBatch(columns=columns, n_rows=n, predictions=score / 10_000.0)
    schema = Schema.from_dict(gen_capture.schema_dict())
    return bytes(build_baseline([batch], schema, metrics={"auc": 0.8}).to_json())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=300_000,
                   help="capture records in the window (100k per file, <= 1M per hour)")
    args = p.parse_args(argv)
    if not 0 < args.records <= 1_000_000:
        p.error("--records must be in 1..1000000 (one hour folder holds 10 files of 100k)")
    for key, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1",
                       "POWERTOOLS_METRICS_NAMESPACE": "driftloop"}.items():
        os.environ[key] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)
    root = gen_capture.generate(args.records)
    files = sorted(root.rglob("*.jsonl"))
    size = sum(f.stat().st_size for f in files)

    import boto3
    from moto import mock_aws

    from lambdas import _aws, drift_check

    with mock_aws():
        _aws.reset_clients()
        s3 = boto3.client("s3")
        for bucket in ("capture", "artifacts", "reports"):
            s3.create_bucket(Bucket=bucket)
        boto3.client("dynamodb").create_table(
            TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST")
        boto3.client("events").create_event_bus(Name="bench")
        s3.put_object(Bucket="artifacts", Key="baselines/current/baseline.json",
                      Body=baseline_bytes(50_000))
        for f in files:
            s3.upload_file(str(f), "capture", f"capture/{f.relative_to(root).as_posix()}")
        env = {"CAPTURE_BUCKET": "capture", "CAPTURE_PREFIX": "capture",
               "ENDPOINT_NAME": gen_capture.ENDPOINT, "ARTIFACTS_BUCKET": "artifacts",
               "BASELINE_KEY": "baselines/current/baseline.json", "REPORTS_BUCKET": "reports",
               "STATE_TABLE": "state", "EVENT_BUS_NAME": "bench", "WINDOW_HOURS": "1",
               "GRACE_MINUTES": "15", "DRIFT_CONFIG": "{}",
               "FIRST_WINDOW_START": gen_capture.START.strftime("%Y-%m-%dT%H:%M:%SZ")}
        os.environ.update(env)
        when = gen_capture.START + timedelta(hours=1, minutes=20)
        event = {"time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "detail-type": "Scheduled Event"}
        emf = io.StringIO()
        t0 = time.perf_counter()
        with redirect_stdout(emf):
            summary = drift_check.handler(event, Context())
        elapsed = time.perf_counter() - t0
    window = summary["windows"][0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "bench": "drift_check handler (moto in-process)",
        "records": args.records, "files": len(files), "megabytes": round(size / 1e6, 1),
        "seconds": round(elapsed, 2), "rows_per_second": round(window["n_rows"] / elapsed),
        "mb_per_second": round(size / 1e6 / elapsed, 1), "peak_rss_mb": round(peak_mb),
        "n_rows": window["n_rows"], "n_malformed": window["n_malformed"],
        "status": window["status"], "drift_share": window["drift_share"],
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
