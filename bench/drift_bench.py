"""End-to-end speed and memory of `driftloop drift` on SageMaker capture files.

The target: one core reads, profiles and compares at least 200,000 capture records a
second (20 numeric + 5 categorical features, CSV payloads, one record per line), with
peak memory at most 512 MB at 1M and 10M records. Each size runs the real console
script as a subprocess on files in the SageMaker key layout (generated and cached by
gen_capture.py), timing the wall clock and reading the child's own peak RSS and CPU
time from os.wait4. The reader alone is timed too, in a separate subprocess per
engine (read_capture's engine="native", the compiled one-pass scanner that
`driftloop drift` uses when it was built at install; engine="arrow", pyarrow's CSV
reader for the payload values; and engine="numpy", the numpy+orjson path the Lambda
bundle uses), to show where the time goes. The machine's
load average is printed with the figures: on a shared machine wall-clock speed
understates what one free core does.

Environment: BENCH_SIZES (default "1000000,10000000"), BENCH_READER_ONLY=0 to skip
the reader-only runs, BENCH_ENGINES (default "native,arrow,numpy") for them. Results also go
to .bench/drift_bench.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_capture import ROOT, generate, schema_dict, write_training_table  # noqa: E402

TARGET_RATE = 200_000
TARGET_RSS_MB = 512
TRAIN_ROWS = 200_000

READER_SNIPPET = """
import sys, json
from driftloop.capture import iter_capture_paths, read_capture
from driftloop.errors import MalformedLog
from driftloop.schema import Schema
schema = Schema.from_dict(json.loads(sys.argv[2]))
log = MalformedLog()
n = 0
for path in iter_capture_paths(sys.argv[1]):
    for batch in read_capture(path, schema=schema, malformed=log, engine=sys.argv[3]):
        n += batch.n_rows
print(json.dumps({"rows": n, "malformed": log.total}))
"""


def sizes() -> list[int]:
    raw = os.environ.get("BENCH_SIZES", "1000000,10000000")
    return [int(s.replace("_", "")) for s in raw.split(",") if s.strip()]


def engines() -> list[str]:
    raw = os.environ.get("BENCH_ENGINES", "native,arrow,numpy")
    return [e.strip() for e in raw.split(",") if e.strip()]


def driftloop_cmd() -> list[str]:
    script = Path(sys.executable).with_name("driftloop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "driftloop.cli"]


def timed(cmd: list[str]) -> dict[str, Any]:
    """Run cmd; wall seconds, the child's own CPU seconds and peak RSS, exit code, output.

    os.wait4 reaps the child and returns its own rusage (RUSAGE_CHILDREN would mix in
    every earlier child), so peak RSS is this run's alone.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "exit": proc.returncode,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def ensure_baseline() -> Path:
    baseline = ROOT / f"baseline-{TRAIN_ROWS}.json"
    if baseline.exists():
        return baseline
    table = write_training_table(ROOT / f"train-{TRAIN_ROWS}.csv", TRAIN_ROWS)
    r = timed(
        [*driftloop_cmd(), "baseline", str(table), "--target", "label", "--out", str(baseline)]
    )
    if r["exit"] != 0:
        raise SystemExit(f"driftloop baseline failed ({r['exit']}): {r['stderr'].strip()}")
    return baseline


def _ok(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


def main() -> int:
    load = os.getloadavg()
    print("driftloop drift benchmark — 20 numeric + 5 categorical features, CSV payloads")
    print(
        f"cores: {os.cpu_count()}, load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    from driftloop import capture

    if capture._scan is not None:
        print("compiled scanner built: `driftloop drift` reads exact-layout lines with it")
    else:
        print("compiled scanner NOT built (no C compiler at install?): slower Python paths")
    try:
        import pyarrow  # noqa: F401

        print("pyarrow installed: other CSV payloads are parsed with pyarrow")
    except ImportError:
        print("pyarrow not installed: other CSV payloads are parsed with numpy")
    baseline = ensure_baseline()
    results: list[dict[str, Any]] = []
    reader_only = os.environ.get("BENCH_READER_ONLY", "1") != "0"
    for n in sorted(sizes()):
        folder = generate(n)
        report = ROOT / f"drift-report-{n}.json"
        r = timed(
            [
                *driftloop_cmd(),
                "drift",
                "--baseline",
                str(baseline),
                "--json",
                str(report),
                str(folder),
            ]
        )
        row: dict[str, Any] = {"records": n, "what": "driftloop drift (end to end)", **r}
        if r["exit"] not in (0, 1):
            print(
                f"driftloop drift failed at {n:,} ({r['exit']}): {r['stderr'].strip()}",
                file=sys.stderr,
            )
        elif report.exists():
            doc = json.loads(report.read_text())
            row["rows_checked"] = doc.get("n_rows")
            row["verdict"] = "drift" if doc.get("dataset_drift") else "no drift"
        results.append(row)
        if reader_only:
            for engine in engines():
                rr = timed(
                    [
                        sys.executable,
                        "-c",
                        READER_SNIPPET,
                        str(folder),
                        json.dumps(schema_dict()),
                        engine,
                    ]
                )
                if rr["exit"] != 0:
                    print(
                        f"read_capture ({engine}) failed at {n:,}: {rr['stderr'].strip()}",
                        file=sys.stderr,
                    )
                results.append({"records": n, "what": f"read_capture only ({engine})", **rr})
    print()
    cols = ("records", "what", "wall s", "rec/s (wall)", "cpu s", "rec/cpu-s", "peak RSS MB")
    head = "{:>12} {:<30} {:>8} {:>14} {:>8} {:>12} {:>12}".format(*cols)
    print(head)
    print("-" * len(head))
    for row in results:
        n = row["records"]
        cpu = max(row["cpu_s"], 1e-9)
        print(
            f"{n:>12,} {row['what']:<30} {row['wall_s']:>8.2f} {n / row['wall_s']:>14,.0f} "
            f"{row['cpu_s']:>8.2f} {n / cpu:>12,.0f} {row['peak_rss_mb']:>12.0f}"
        )
    end_to_end = [r for r in results if r["what"].startswith("driftloop drift")]
    for row in end_to_end:
        n = row["records"]
        rate = n / row["wall_s"]
        cpu_rate = n / max(row["cpu_s"], 1e-9)
        rss = row["peak_rss_mb"]
        print(
            f"target at {n:,}: >= {TARGET_RATE:,} rec/s: wall {_ok(rate >= TARGET_RATE)}"
            f" ({rate:,.0f}), per CPU-second {_ok(cpu_rate >= TARGET_RATE)} ({cpu_rate:,.0f});"
            f" peak RSS <= {TARGET_RSS_MB} MB: {_ok(rss <= TARGET_RSS_MB)} ({rss:.0f} MB);"
            f" verdict: {row.get('verdict', '?')}"
        )
    load_end = os.getloadavg()
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    out = ROOT / "drift_bench.json"
    for row in results:
        row.pop("stdout", None)
        row.pop("stderr", None)
    out.write_text(
        json.dumps({"load_start": load, "load_end": load_end, "results": results}, indent=2)
    )
    failed = [r for r in end_to_end if r["exit"] not in (0, 1)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
