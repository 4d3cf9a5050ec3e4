"""driftloop._scan called directly: its own contract, on input the reader never gives it.

The reader hands the scanner whole lines that end in newlines (test_capture_engines
holds what it returns then). Here: truncated and mutated bytes, wrong line counts and
arrays too small give None or a ValueError, never a crash or a read past the input.
(`valgrind .venv/bin/python` over the same loops found no invalid access in _scan.)
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from driftloop import _scan  # required here: the suite runs on an install that built it
from driftloop.capture import encode_capture_record

KINDS = bytes([0, 0, 1, 0])  # numeric, numeric, categorical, numeric
T0 = datetime(2026, 11, 1, tzinfo=UTC)
GOOD = b"".join(
    encode_capture_record(
        input_data=f"{i}.5,-{i}e2,k{i},0.{i}".encode(),
        input_content_type="text/csv",
        output_data=b"0.5,1",
        output_content_type="text/csv",
        event_id=f"e{i}",
        inference_id=f"x{i}" if i % 2 else None,
        inference_time=T0 + timedelta(seconds=i),
    )
    for i in range(3)
)


def scan(blob: bytes, n: int | None = None, rows: int | None = None) -> Any:
    n = blob.count(b"\n") if n is None else n
    size = max(n, 1) if rows is None else rows
    num = np.full((3, size), -1.0)
    cat = np.full((1, size), -9, dtype=np.int32)
    pred = np.full(size, -1.0)
    times = np.full(size, -9, dtype=np.int32)
    got = _scan.scan(blob, n, KINDS, num, cat, pred, times, size, 0)
    return got, num, cat, pred, times


def test_good_lines_fill_the_arrays() -> None:
    got, num, cat, pred, times = scan(GOOD)
    names, event_ids, inference_ids, time_names = got
    assert num[:, 1].tolist() == [1.5, -100.0, 0.1]
    assert names == [["k0", "k1", "k2"]] and cat[0].tolist() == [0, 1, 2]
    assert pred.tolist() == [0.5, 0.5, 0.5]
    assert event_ids == ["e0", "e1", "e2"] and inference_ids == [None, "x1", None]
    assert time_names == ["2026-11-01T00:00:00Z", "2026-11-01T00:00:01Z", "2026-11-01T00:00:02Z"]
    assert times.tolist() == [0, 1, 2]


def test_every_truncation_is_declined_unless_it_ends_a_line() -> None:
    whole = {GOOD[: i + 1] for i, b in enumerate(GOOD) if b == ord("\n")}
    for k in range(len(GOOD)):
        for blob in (GOOD[:k], GOOD[:k] + b"\n"):
            got = scan(blob)[0]
            assert (got is not None) == (blob in whole), (k, blob[-20:])


def test_mutated_bytes_never_crash() -> None:
    rng = random.Random(7)
    accepted = 0
    for _ in range(3000):
        b = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice(b'0123456789.,-+eE"\\\n x\x00\xff')
        got = scan(bytes(b))[0]
        accepted += got is not None
    # some mutations (a digit for a digit) are still good lines; most are not
    assert 0 < accepted < 3000


def test_wrong_line_counts_and_sizes() -> None:
    assert scan(GOOD, n=2)[0] is None  # a line left over
    assert scan(GOOD, n=4)[0] is None  # a line missing
    assert scan(GOOD[:-1], n=2)[0] is None  # no newline at the end
    assert scan(b"", n=0)[0] is None
    with pytest.raises(ValueError, match="bad sizes"):
        scan(GOOD, rows=2)  # three lines, arrays for two
    with pytest.raises(ValueError, match="needed"):
        _scan.scan(GOOD, 3, KINDS, np.empty((2, 3)), np.empty((1, 3), np.int32),
                   np.empty(3), np.empty(3, np.int32), 3, 0)  # fmt: skip
    with pytest.raises((TypeError, BufferError)):
        _scan.scan(GOOD, 3, KINDS, b"read-only" * 100, np.empty((1, 3), np.int32),
                   np.empty(3), np.empty(3, np.int32), 3, 0)  # fmt: skip


def test_newlines() -> None:
    assert np.frombuffer(_scan.newlines(b"a\nbc\n\n"), dtype=np.int64).tolist() == [1, 4, 5]
    assert _scan.newlines(b"") == bytearray()


def test_rows_beyond_the_arrays_are_declined() -> None:
    # Given one request of three rows, and arrays with room for one row per line only
    line = encode_capture_record(
        input_data=b"1,2,a,3\n4,5,b,6\n7,8,c,9",
        input_content_type="text/csv",
        output_data=b"0.1\n0.2\n0.3",
        output_content_type="text/csv",
        event_id="m",
        inference_time=T0,
    )
    # Then the scanner declines rather than write past them; with room, it reads them
    assert _scan.row_breaks(line) == 4  # two in the input, two in the output
    assert _scan.row_breaks(b'[[1],[2]] \\n x') == 4  # three brackets, one escaped newline
    assert scan(line, rows=1)[0] is None
    assert scan(line, rows=2)[0] is None
    got, num, cat, pred, _ = scan(line, rows=3)
    assert got[1] == ["m:0", "m:1", "m:2"] and pred.tolist() == [0.1, 0.2, 0.3]
    assert num[0].tolist() == [1.0, 4.0, 7.0] and cat[0].tolist() == [0, 1, 2]
