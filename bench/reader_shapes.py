"""Capture reader speed by payload shape and engine (rows per second, in memory).

drift_bench.py measures the shape the issue names (one CSV row per request). Real
endpoints also take batches of CSV rows per request, and JSON. This prints rows/s of
`read_capture` for each shape with each engine on the same bytes (20 numeric + 5
categorical features): the compiled scanner reads CSV in either shape, and declines
JSON, which the Python paths read.

Environment: READER_SHAPES_ROWS (default 200000 rows per shape).
"""

from __future__ import annotations

import io
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_capture import schema_dict  # noqa: E402

from driftloop.capture import encode_capture_record, read_capture  # noqa: E402
from driftloop.errors import MalformedLog  # noqa: E402
from driftloop.schema import Schema  # noqa: E402

CATS = [
    ["amber", "blue", "green", "red"],
    ["central", "west", "east", "south", "north"],
    ["premium", "plus", "basic"],
    ["kiosk", "phone", "partner", "store", "mobile", "web"],
    ["a", "b"],
]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rows(rng: random.Random, n: int) -> list[list[str]]:
    return [
        [f"{rng.gauss(0, 30):.2f}" for _ in range(20)] + [rng.choice(c) for c in CATS]
        for _ in range(n)
    ]


def capture(shape: str, n_rows: int, seed: int = 0) -> bytes:
    """n_rows rows as capture lines: "csv" one row per request, "csv10" ten, "json" one."""
    rng = random.Random(seed)
    per = 10 if shape == "csv10" else 1
    out = []
    for i in range(n_rows // per):
        batch = rows(rng, per)
        scores = [f"{rng.random():.4f}" for _ in batch]
        if shape == "json":
            body = orjson.dumps({"instances": [[float(v) for v in r[:20]] + r[20:] for r in batch]})
            output = orjson.dumps({"predictions": [float(s) for s in scores]})
            ctype = "application/json"
        else:
            body = "\n".join(",".join(r) for r in batch).encode()
            output = "\n".join(scores).encode()
            ctype = "text/csv"
        out.append(
            encode_capture_record(
                input_data=body,
                input_content_type=ctype,
                output_data=output,
                output_content_type=ctype,
                event_id=f"e{i}",
                inference_time=T0 + timedelta(seconds=i // 20),
            )
        )
    return b"".join(out)


def main() -> int:
    n = int(os.environ.get("READER_SHAPES_ROWS", "200000"))
    schema = Schema.from_dict(schema_dict())
    print(f"read_capture rows/s by payload shape and engine ({n:,} rows each, in memory)")
    print(f"{'shape':<28} {'native':>10} {'arrow':>10} {'numpy':>10}")
    for shape, label in (
        ("csv", "CSV, 1 row per request"),
        ("csv10", "CSV, 10 rows per request"),
        ("json", "JSON, 1 row per request"),
    ):
        blob = capture(shape, n)
        speeds = []
        for engine in ("native", "arrow", "numpy"):
            log = MalformedLog()
            t0 = time.perf_counter()
            got = sum(
                b.n_rows
                for b in read_capture(io.BytesIO(blob), schema=schema, malformed=log, engine=engine)
            )
            dt = time.perf_counter() - t0
            if got != n or log.total:
                print(f"{shape}/{engine}: read {got} rows, {log.total} malformed", file=sys.stderr)
                return 1
            speeds.append(f"{got / dt / 1000:,.0f}k")
        print(f"{label:<28} {speeds[0]:>10} {speeds[1]:>10} {speeds[2]:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
