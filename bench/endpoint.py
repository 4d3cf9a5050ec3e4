"""Local endpoint figures: single-row latency, 100-row throughput, and what data capture costs.

    .venv/bin/python bench/endpoint.py            # (make bench runs it with the others)
    BENCH_ENDPOINT_REQUESTS=500 BENCH_ENDPOINT_CLIENTS=4 .venv/bin/python bench/endpoint.py

Trains the demo model in-process (5k rows), serves it with driftloop.local.endpoint on
127.0.0.1 and S3 from moto (in-process), then for capture off and capture on (100%
sampling, CSV/JSON as text) measures:

- p50 / p99 latency of single-row CSV requests from one client (new connection each,
  as urllib does);
- rows/s of 100-row CSV requests from BENCH_ENDPOINT_CLIENTS concurrent clients;

and prints capture-on / capture-off ratios. It checks that every captured request was
written (the figures of a lossy run would be meaningless).
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REQUESTS = int(os.environ.get("BENCH_ENDPOINT_REQUESTS", "300"))
BATCH_REQUESTS = int(os.environ.get("BENCH_ENDPOINT_BATCH_REQUESTS", "60"))
CLIENTS = int(os.environ.get("BENCH_ENDPOINT_CLIENTS", "2"))
BATCH_ROWS = 100


def _model(folder: Path) -> Path:
    from threadpoolctl import threadpool_limits

    from driftloop.local.training import pack_tar
    from training import train
    from training.datagen import write_dataset

    paths = write_dataset(folder / "data", rows=5000, seed=3)
    argv = ["--train", str(paths["train"]), "--validation", str(paths["validation"]),
            "--model-dir", str(folder / "model"),
            "--output-data-dir", str(folder / "out")]  # fmt: skip
    with threadpool_limits(limits=1, user_api="openmp"), contextlib.redirect_stdout(io.StringIO()):
        if train.main(argv) != 0:
            raise SystemExit("training failed")
    return pack_tar(folder / "model", folder / "model.tar.gz")


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url + "/invocations", data=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def _latencies(url: str, body: bytes, n: int) -> list[float]:
    for _ in range(10):  # warm-up
        _post(url, body)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        _post(url, body)
        out.append(time.perf_counter() - t0)
    return out


def _throughput(url: str, body: bytes, n_per_client: int, clients: int) -> float:
    def run() -> None:
        for _ in range(n_per_client):
            _post(url, body)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n_per_client * clients * BATCH_ROWS / (time.perf_counter() - t0)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(model_tar: Path, s3: Any, capture: dict[str, Any] | None, rows: Any) -> dict[str, Any]:
    from driftloop.local.endpoint import LocalEndpoint

    one = ",".join(str(v) for v in rows.iloc[0]).encode()
    many = "\n".join(
        ",".join(str(v) for v in r) for r in rows.iloc[:BATCH_ROWS].itertuples(index=False)
    ).encode()
    with LocalEndpoint(model_tar, s3_client=s3, capture_config=capture, seed=1) as endpoint:
        lat = _latencies(endpoint.url, one, REQUESTS)
        per_client = max(1, BATCH_REQUESTS // CLIENTS)
        rows_s = _throughput(endpoint.url, many, per_client, CLIENTS)
    stats = endpoint.stats()
    if capture is not None and stats["capture_records_written"] != stats["sampled"]:
        raise SystemExit(f"capture lost records: {stats}")
    return {
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": _pct(lat, 0.99) * 1000,
        "rows_s": rows_s,
        "captured": stats["capture_records_written"],
        "requests": stats["requests"],
    }


def main() -> int:
    import boto3
    from moto import mock_aws

    from training.datagen import FEATURES, training_set

    rows = training_set(BATCH_ROWS, seed=9)[list(FEATURES)]
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://bench-capture/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    }
    with tempfile.TemporaryDirectory() as tmp, mock_aws():
        t0 = time.perf_counter()
        model_tar = _model(Path(tmp))
        print(f"model trained on 3500 rows in {time.perf_counter() - t0:.1f} s")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench-capture")
        off = _measure(model_tar, s3, None, rows)
        on = _measure(model_tar, s3, capture, rows)
    print(f"single-row requests: {REQUESTS} sequential; {BATCH_ROWS}-row requests: "
          f"{BATCH_REQUESTS} over {CLIENTS} clients; cpus={os.cpu_count()}")  # fmt: skip
    print(f"{'':<14}{'p50 ms':>10}{'p99 ms':>10}{'rows/s (100-row)':>20}{'captured':>10}")
    for name, r in (("capture off", off), ("capture on", on)):
        print(f"{name:<14}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['rows_s']:>20.0f}"
              f"{r['captured']:>10}")  # fmt: skip
    print(f"capture overhead: p50 x{on['p50_ms'] / off['p50_ms']:.2f}, "
          f"p99 x{on['p99_ms'] / off['p99_ms']:.2f}, "
          f"throughput x{on['rows_s'] / off['rows_s']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
