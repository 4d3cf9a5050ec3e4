"""Generate SageMaker Data Capture files for the benchmarks, fast.

`make bench` reads millions of capture records; writing them one `orjson.dumps` at a time
would take longer than the check being measured. Here every line is assembled by numpy
from a table of byte pieces (constant JSON fragments, pre-formatted numbers, category
names, event ids): each record is a row of piece indices, and one gather writes a whole
block of lines. The output is the exact layout `driftloop.capture.encode_capture_record`
writes (a unit test compares the two), under the SageMaker key layout
`{root}/capture/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl`, cached under `.bench/`.

Run alone: `python bench/gen_capture.py 1000000` prints the folder it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

N_NUMERIC = 20
N_CATEGORICAL = 5
CATEGORIES = (
    ("red", "green", "blue", "amber"),
    ("north", "south", "east", "west", "central"),
    ("basic", "plus", "premium"),
    ("web", "mobile", "store", "partner", "phone", "kiosk"),
    ("a", "b"),
)
ENDPOINT = "bench-endpoint"
VARIANT = "AllTraffic"
START = datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC)
RECORDS_PER_FILE = 100_000
BLOCK = 20_000
# numeric values are written with two decimals, in [-CLIP, CLIP]
CLIP = 99_999  # in hundredths: -999.99 .. 999.99

ROOT = Path(__file__).resolve().parent.parent / ".bench"


def feature_names() -> tuple[list[str], list[str]]:
    return [f"n{i:02d}" for i in range(N_NUMERIC)], [f"c{i}" for i in range(N_CATEGORICAL)]


def schema_dict() -> dict[str, object]:
    """The driftloop Schema (as its dict) of the generated requests."""
    num, cat = feature_names()
    return {"features": num + cat, "categorical": cat, "target": "label", "problem": "binary"}


def _feature_params(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    means = rng.uniform(-50, 50, N_NUMERIC)
    scales = rng.uniform(1, 20, N_NUMERIC)
    return means, scales


def sample(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(numeric hundredths int (n, 20), category codes (n, 5), score ten-thousandths (n,))."""
    params = np.random.default_rng(12345)
    means, scales = _feature_params(params)
    rng = np.random.default_rng(seed)
    x = rng.normal(means + shift * scales, scales, size=(n, N_NUMERIC))
    num = np.clip(np.rint(x * 100), -CLIP, CLIP).astype(np.int64)
    cats = np.empty((n, N_CATEGORICAL), dtype=np.int64)
    for j, values in enumerate(CATEGORIES):
        p = np.linspace(1.0, 2.0, len(values))
        cats[:, j] = rng.choice(len(values), size=n, p=p / p.sum())
    score = np.clip(np.rint(rng.beta(2, 5, n) * 10_000), 0, 10_000).astype(np.int64)
    return num, cats, score


class _Pieces:
    """A table of byte strings laid end to end, addressed by index."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def add(self, items: list[bytes]) -> int:
        first = len(self.chunks)
        self.chunks.extend(items)
        return first

    def freeze(self) -> None:
        lens = np.fromiter(map(len, self.chunks), dtype=np.int64, count=len(self.chunks))
        self.lens = lens
        self.offsets = np.concatenate(([0], np.cumsum(lens)[:-1]))
        self.buf = np.frombuffer(b"".join(self.chunks), dtype=np.uint8)

    def gather(self, idx: np.ndarray) -> bytes:
        """Concatenate pieces idx (any shape, row-major) into one bytes object."""
        flat = idx.ravel()
        lens = self.lens[flat]
        out_starts = np.cumsum(lens) - lens
        total = int(lens.sum())
        src = np.repeat(self.offsets[flat] - out_starts, lens) + np.arange(total)
        return self.buf[src].tobytes()


def _hundredths_table() -> list[bytes]:
    codes = np.arange(-CLIP, CLIP + 1)
    return [b"%.2f" % (c / 100) for c in codes.tolist()]


def _build_pieces(hour: datetime) -> tuple[_Pieces, dict[str, int]]:
    p = _Pieces()
    at: dict[str, int] = {}
    at["head"] = p.add(
        [
            b'{"captureData":{"endpointInput":{"observedContentType":"text/csv",'
            b'"mode":"INPUT","data":"'
        ]
    )
    at["comma"] = p.add([b","])
    at["mid"] = p.add(
        [
            b'","encoding":"CSV"},"endpointOutput":{"observedContentType":'
            b'"text/csv; charset=utf-8","mode":"OUTPUT","data":"'
        ]
    )
    at["meta"] = p.add([b'","encoding":"CSV"}},"eventMetadata":{"eventId":"'])
    at["time"] = p.add([b'","inferenceTime":"'])
    at["tail"] = p.add([b'"},"eventVersion":"0"}\n'])
    at["num"] = p.add(_hundredths_table())
    at["cat"] = p.add([v.encode() for values in CATEGORIES for v in values])
    at["score"] = p.add([b"%.4f" % (s / 10_000) for s in range(10_001)])
    at["sec"] = p.add(
        [(hour + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ").encode() for s in range(3600)]
    )
    at["hex"] = p.add([b"%02x" % b for b in range(256)])
    at["dash"] = p.add([b"-"])
    p.freeze()
    return p, at


def _cat_offsets() -> np.ndarray:
    sizes = [len(v) for v in CATEGORIES]
    return np.concatenate(([0], np.cumsum(sizes)[:-1]))


def render_block(
    pieces: _Pieces,
    at: dict[str, int],
    num: np.ndarray,
    cats: np.ndarray,
    score: np.ndarray,
    ids: np.ndarray,
    seconds: np.ndarray,
) -> bytes:
    """Capture lines for one block of records, as bytes."""
    n = len(num)
    cols: list[np.ndarray] = [np.full(n, at["head"])]
    for j in range(N_NUMERIC):
        if j:
            cols.append(np.full(n, at["comma"]))
        cols.append(at["num"] + num[:, j] + CLIP)
    cat_off = _cat_offsets()
    for j in range(N_CATEGORICAL):
        cols.append(np.full(n, at["comma"]))
        cols.append(at["cat"] + cat_off[j] + cats[:, j])
    cols.append(np.full(n, at["mid"]))
    cols.append(at["score"] + score)
    cols.append(np.full(n, at["meta"]))
    # event id: 16 random bytes as a UUID-shaped hex string (8-4-4-4-12)
    for b in range(16):
        if b in (4, 6, 8, 10):
            cols.append(np.full(n, at["dash"]))
        cols.append(at["hex"] + ids[:, b])
    cols.append(np.full(n, at["time"]))
    cols.append(at["sec"] + seconds)
    cols.append(np.full(n, at["tail"]))
    return pieces.gather(np.stack(cols, axis=1))


def capture_dir(n: int, shift: float = 0.0) -> Path:
    tag = f"capture-{n}" + (f"-shift{shift:g}" if shift else "")
    return ROOT / tag


def generate(n: int, *, seed: int = 7, shift: float = 0.0, quiet: bool = False) -> Path:
    """Write (or reuse) n capture records; return the folder (the `capture/` prefix root)."""
    out = capture_dir(n, shift)
    done = out / "done.json"
    if done.exists():
        return out / "capture"
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    written = 0
    file_no = 0
    cache: dict[datetime, tuple[_Pieces, dict[str, int]]] = {}
    while written < n:
        in_file = min(RECORDS_PER_FILE, n - written)
        # one file per 100k records, one hour folder per 10 files
        hour = START + timedelta(hours=file_no // 10)
        if hour not in cache:
            cache.clear()
            cache[hour] = _build_pieces(hour)
        pieces, at = cache[hour]
        key = (
            out
            / "capture"
            / ENDPOINT
            / VARIANT
            / hour.strftime("%Y/%m/%d/%H")
            / f"{file_no:05d}-{seed}.jsonl"
        )
        key.parent.mkdir(parents=True, exist_ok=True)
        with key.open("wb") as fh:
            left = in_file
            while left:
                m = min(BLOCK, left)
                num, cats, score = sample(m, int(rng.integers(1 << 62)), shift)
                ids = rng.integers(0, 256, size=(m, 16))
                seconds = np.sort(rng.integers(0, 3600, size=m))
                fh.write(render_block(pieces, at, num, cats, score, ids, seconds))
                left -= m
        written += in_file
        file_no += 1
    done.write_text(json.dumps({"records": n, "files": file_no, "seed": seed, "shift": shift}))
    if not quiet:
        print(
            f"generated {n:,} capture records in {time.perf_counter() - t0:.1f}s -> {out}",
            file=sys.stderr,
        )
    return out / "capture"


def write_training_table(path: Path, n: int, seed: int = 1) -> Path:
    """A CSV table with a header (the 25 features and a label) to build the baseline from."""
    if path.exists():
        return path
    num, cats, score = sample(n, seed)
    num_names, cat_names = feature_names()
    cat_off = _cat_offsets()
    p = _Pieces()
    at: dict[str, int] = {}
    at["num"] = p.add(_hundredths_table())
    at["cat"] = p.add([v.encode() for values in CATEGORIES for v in values])
    at["comma"] = p.add([b","])
    at["label"] = p.add([b"0\n", b"1\n"])
    p.freeze()
    label = (score > 3000).astype(np.int64)
    cols: list[np.ndarray] = []
    for j in range(N_NUMERIC):
        cols += [at["num"] + num[:, j] + CLIP, np.full(n, at["comma"])]
    for j in range(N_CATEGORICAL):
        cols += [at["cat"] + cat_off[j] + cats[:, j], np.full(n, at["comma"])]
    cols.append(at["label"] + label)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ",".join(num_names + cat_names + ["label"]) + "\n"
    with path.open("wb") as fh:
        fh.write(header.encode())
        fh.write(p.gather(np.stack(cols, axis=1)))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "records",
        type=int,
        nargs="*",
        help="records to generate (default: the sizes in BENCH_SIZES)",
    )
    ap.add_argument("--shift", type=float, default=0.0, help="mean shift in feature std units")
    args = ap.parse_args(argv)
    counts = args.records or [
        int(x) for x in os.environ.get("BENCH_SIZES", "1000000,10000000").split(",") if x.strip()
    ]
    for n in counts:
        cached = (capture_dir(n, args.shift) / "done.json").exists()
        t0 = time.perf_counter()
        folder = generate(n, shift=args.shift, quiet=True)
        secs = time.perf_counter() - t0
        how = "cached" if cached else f"generated in {secs:.1f}s ({n / secs:,.0f} records/s)"
        print(f"{n:>12,} capture records: {how} -> {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
