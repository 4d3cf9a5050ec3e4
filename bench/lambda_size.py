"""How big is each Lambda bundle, and how long does each handler take to import cold?

Prints, per driftloop function, the unzipped size of its code asset (all functions share
one bundle: lambdas/ + driftloop/ + the wheels in build/lambda-deps) against Lambda's
250 MB limit, the zipped size the CDK uploads, and the cold import time of the handler
module measured in a fresh subprocess (median of N runs, `time.perf_counter` around the
import). The import runs on THIS machine's venv interpreter as a stand-in: the bundle
holds manylinux wheels for Python 3.12 that may not match this Python, so the figure
is indicative of the Lambda init phase, not equal to it.

    .venv/bin/python bench/lambda_size.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from driftloop.errors import DriftloopError  # noqa: E402
from infra.lambda_bundle import build_lambda_bundle  # noqa: E402

HANDLERS = {
    "drift-check": "lambdas.drift_check",
    "quality-check": "lambdas.quality_check",
    "retrain-trigger": "lambdas.retrain_trigger",
    "retrain-steps": "lambdas.retrain_steps",
}
LAMBDA_UNZIPPED_LIMIT_MB = 250.0
PROBE = (
    "import time, importlib, sys; t = time.perf_counter(); importlib.import_module(sys.argv[1]); "
    "print(time.perf_counter() - t)"
)


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def zipped_size(folder: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.tell()


def cold_import_seconds(module: str, runs: int) -> float:
    env = {
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "driftloop",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
    }
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, module],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per handler")
    args = parser.parse_args()
    try:
        bundle = build_lambda_bundle()
    except DriftloopError as exc:
        raise SystemExit(f"lambda_size: {exc}") from None
    size, n_files = folder_size(bundle)
    zipped = zipped_size(bundle)
    mb = size / 1e6
    print(f"bundle: {bundle.relative_to(ROOT)} ({n_files} files)")
    share = mb / LAMBDA_UNZIPPED_LIMIT_MB
    print(
        f"  unzipped {mb:.1f} MB of {LAMBDA_UNZIPPED_LIMIT_MB:.0f} MB ({share:.0%}),",
        f"zipped {zipped / 1e6:.1f} MB",
    )
    for top in sorted({p.relative_to(bundle).parts[0] for p in bundle.iterdir()}):
        part, _ = (
            folder_size(bundle / top)
            if (bundle / top).is_dir()
            else ((bundle / top).stat().st_size, 1)
        )
        if part > 1e6:
            print(f"    {top:<28} {part / 1e6:6.1f} MB")
    version = sys.version.split()[0]
    print(f"cold import (median of {args.runs} fresh {version} interpreters; 3.12 stand-in):")
    for function, module in HANDLERS.items():
        seconds = cold_import_seconds(module, args.runs)
        print(
            f"  {function:<16} {module:<26} unzipped {mb:5.1f} MB  import {seconds * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()
