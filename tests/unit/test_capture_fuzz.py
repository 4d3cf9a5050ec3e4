"""Fuzzing the capture reader: bad and mutated records never raise, and nothing is unaccounted."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftloop.batch import FeatureBatch
from driftloop.capture import DROPPING_REASONS, encode_capture_record, read_capture
from driftloop.errors import MalformedLog
from driftloop.schema import Schema

SCHEMA = Schema(features=("a", "b", "c"), categorical=frozenset({"c"}))
T0 = datetime(2026, 11, 1, 10, 15, 49, tzinfo=UTC)


def _rec(
    data: bytes, out: bytes, ctype: str = "text/csv", otype: str = "text/csv", b64: bool = False
) -> bytes:
    return encode_capture_record(
        input_data=data,
        input_content_type=ctype,
        output_data=out,
        output_content_type=otype,
        event_id="ev",
        inference_time=T0,
        inference_id="iid",
        csv_content_types=() if b64 else ("text/csv",),
        json_content_types=() if b64 else ("application/json",),
    ).rstrip(b"\n")


TEMPLATES = [
    _rec(b"1.5,2,x", b"0.5"),
    _rec(b"1,2,x\n3,4,y\n", b"0.1\n0.2\n"),
    _rec(
        b'[[1, 2, "x"], [3, null, "y"]]',
        b'{"predictions": [{"score": 0.1}, {"score": 0.2}]}',
        "application/json",
        "application/json",
    ),
    _rec(b'1,"2",",x"', b"0.5", b64=True),
    _rec(
        b'{"instances": [{"a": 1, "b": 2, "c": "z"}]}',
        b"[0.9]",
        "application/json",
        "application/json",
    ),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 10)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
PATHS = [
    ("captureData",),
    ("captureData", "endpointInput"),
    ("captureData", "endpointInput", "data"),
    ("captureData", "endpointInput", "encoding"),
    ("captureData", "endpointInput", "observedContentType"),
    ("captureData", "endpointOutput"),
    ("captureData", "endpointOutput", "data"),
    ("captureData", "endpointOutput", "encoding"),
    ("eventMetadata",),
    ("eventMetadata", "eventId"),
    ("eventMetadata", "inferenceId"),
    ("eventMetadata", "inferenceTime"),
]


@st.composite
def json_mutation(draw: st.DrawFn) -> bytes:
    """A template with one field replaced by an arbitrary JSON value, or deleted."""
    doc: Any = orjson.loads(draw(st.sampled_from(TEMPLATES)))
    path = draw(st.sampled_from(PATHS))
    node = doc
    for key in path[:-1]:
        node = node[key]
    if draw(st.booleans()):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = draw(json_values | st.text(alphabet='0123456789,.-\nabe"', max_size=20))
    return orjson.dumps(doc)


@st.composite
def byte_mutation(draw: st.DrawFn) -> bytes:
    """A template with a few bytes deleted, replaced or inserted (no raw newline)."""
    line = bytearray(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(line) - 1))
        op = draw(st.sampled_from(["delete", "replace", "insert"]))
        b = draw(st.binary(min_size=1, max_size=3).filter(lambda x: b"\n" not in x))
        if op == "delete":
            del line[i : i + len(b)]
        elif op == "replace":
            line[i : i + len(b)] = b
        else:
            line[i:i] = b
    return bytes(line)


lines_strategy = st.lists(
    st.one_of(
        st.sampled_from(TEMPLATES),
        json_mutation(),
        byte_mutation(),
        st.binary(max_size=40).filter(lambda x: b"\n" not in x),
    ),
    min_size=1,
    max_size=12,
)


def _read(blob: bytes, chunk_rows: int = 65536) -> tuple[list[FeatureBatch], MalformedLog]:
    log = MalformedLog()
    return list(
        read_capture(
            io.BytesIO(blob), schema=SCHEMA, malformed=log, name="fuzz", chunk_rows=chunk_rows
        )
    ), log


def _flat(batches: list[FeatureBatch]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"ids": [], "pred": [], "a": [], "b": [], "c": []}
    for b in batches:
        out["ids"] += b.event_ids or []
        out["pred"] += (
            np.nan_to_num(b.predictions, nan=-999.0).tolist() if b.predictions is not None else []
        )
        out["a"] += np.nan_to_num(b.columns["a"], nan=-999.0).tolist()
        out["b"] += np.nan_to_num(b.columns["b"], nan=-999.0).tolist()
        out["c"] += b.columns["c"].tolist()
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines_strategy, chunk_rows=st.integers(1, 5))
def test_reader_never_raises_and_accounts_for_every_line(
    lines: list[bytes], chunk_rows: int
) -> None:
    # Given a file of valid, mutated and random lines
    blob = b"\n".join(lines) + b"\n"
    # When it is read whole, in small chunks, and line by line
    whole, log = _read(blob)
    chunked, log_chunked = _read(blob, chunk_rows)
    per_line = [_read(line + b"\n") for line in blob.split(b"\n")[:-1]]
    # Then nothing raised, chunking changes nothing, and the whole equals the sum of its lines
    assert _flat(whole) == _flat(chunked)
    assert log.by_reason == log_chunked.by_reason
    assert _flat(whole) == _flat([b for batches, _ in per_line for b in batches])
    total: dict[str, int] = {}
    for _, line_log in per_line:
        for reason, n in line_log.by_reason.items():
            total[reason] = total.get(reason, 0) + n
    assert dict(log.by_reason) == total
    # and every non-blank line either yielded rows or was counted as dropped
    for raw, (batches, line_log) in zip(blob.split(b"\n")[:-1], per_line, strict=True):
        kept = sum(b.n_rows for b in batches)
        dropped = sum(n for r, n in line_log.by_reason.items() if r in DROPPING_REASONS)
        if raw.strip():
            assert kept + dropped >= 1, raw
        assert all(b.n_rows == len(b.event_ids or []) == len(b.predictions) for b in batches)
