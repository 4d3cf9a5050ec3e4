"""SageMaker Data Capture: exact format, round trips, malformed input, chunking."""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import driftloop.capture as capture_module
from driftloop.batch import FeatureBatch
from driftloop.capture import (
    DROPPING_REASONS,
    KEEPING_REASONS,
    capture_key,
    encode_capture_record,
    format_inference_time,
    iter_capture_paths,
    read_capture,
)
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.schema import Schema

T0 = datetime(2026, 11, 1, 10, 15, 49, tzinfo=UTC)
SCHEMA = Schema(features=("age", "income", "city"), categorical=frozenset({"city"}))

# A line from the AWS SageMaker developer guide ("View captured data"): a CSV request of
# 69 values with a trailing newline, and a CSV score.
AWS_DOC_DATA = (
    "69,0,153.7,109,194.0,105,256.1,114,14.1,6,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
    "0,0,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,1,0,1,0\n"
)
AWS_DOC_LINE = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"' + AWS_DOC_DATA.replace("\n", "\\n") + '","encoding":"CSV"},'
    '"endpointOutput":{"observedContentType":"text/csv; charset=utf-8","mode":"OUTPUT",'
    '"data":"0.0254181120544672","encoding":"CSV"}},'
    '"eventMetadata":{"eventId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",'
    '"inferenceTime":"2022-02-14T17:25:49Z"},"eventVersion":"0"}'
)


def record(
    data: bytes | str,
    output: bytes | str | None = b"0.5",
    *,
    event_id: str = "e",
    content_type: str = "text/csv",
    output_type: str = "text/csv",
    inference_id: str | None = None,
    as_base64: bool = False,
    when: datetime = T0,
) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    out = output.encode() if isinstance(output, str) else output
    text_types: tuple[str, ...] = () if as_base64 else ("text/csv",)
    json_types: tuple[str, ...] = () if as_base64 else ("application/json",)
    return encode_capture_record(
        input_data=raw,
        input_content_type=content_type,
        output_data=out,
        output_content_type=output_type,
        event_id=event_id,
        inference_time=when,
        inference_id=inference_id,
        csv_content_types=text_types,
        json_content_types=json_types,
    )


def read_all(
    blob: bytes, schema: Schema = SCHEMA, chunk_rows: int = 65536
) -> tuple[FeatureBatch | None, MalformedLog]:
    log = MalformedLog()
    batches = list(
        read_capture(
            io.BytesIO(blob), schema=schema, malformed=log, name="f.jsonl", chunk_rows=chunk_rows
        )
    )
    return concat(batches, schema), log


def concat(batches: list[FeatureBatch], schema: Schema) -> FeatureBatch | None:
    if not batches:
        return None
    assert all(b.n_rows == len(b.event_ids or []) for b in batches)
    return FeatureBatch(
        columns={f: np.concatenate([b.columns[f] for b in batches]) for f in schema.features},
        n_rows=sum(b.n_rows for b in batches),
        predictions=np.concatenate([b.predictions for b in batches if b.predictions is not None]),
        event_ids=[e for b in batches for e in (b.event_ids or [])],
        inference_ids=[e for b in batches for e in (b.inference_ids or [])],
        inference_times=np.concatenate(
            [b.inference_times for b in batches if b.inference_times is not None]
        ),
    )


def assert_same(a: FeatureBatch | None, b: FeatureBatch | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.n_rows == b.n_rows
    assert a.columns.keys() == b.columns.keys()
    for name, col in a.columns.items():
        if col.dtype == object:
            assert col.tolist() == b.columns[name].tolist(), name
        else:
            np.testing.assert_array_equal(col, b.columns[name], err_msg=name)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    assert a.event_ids == b.event_ids
    assert a.inference_ids == b.inference_ids
    np.testing.assert_array_equal(a.inference_times, b.inference_times)


# ------------------------------------------------------------------------ the format


def test_writer_reproduces_the_aws_documentation_line_byte_for_byte() -> None:
    # Given the inputs behind the line in the SageMaker developer guide
    # When driftloop writes the record
    line = encode_capture_record(
        input_data=AWS_DOC_DATA.encode(),
        input_content_type="text/csv",
        output_data=b"0.0254181120544672",
        output_content_type="text/csv; charset=utf-8",
        event_id="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        inference_time=datetime(2022, 2, 14, 17, 25, 49, tzinfo=UTC),
    )
    # Then it is the documented line, with its newline
    assert line == AWS_DOC_LINE.encode() + b"\n"


def test_reader_reads_the_aws_documentation_line() -> None:
    # Given the documented line and a 69-feature schema
    schema = Schema(features=tuple(f"f{i}" for i in range(69)))
    # When it is read
    batch, log = read_all(AWS_DOC_LINE.encode() + b"\n", schema)
    # Then one row comes out with the documented values, score, id and time
    assert batch is not None and log.total == 0
    assert batch.n_rows == 1
    assert batch.columns["f0"][0] == 69.0 and batch.columns["f2"][0] == 153.7
    assert batch.columns["f68"][0] == 0.0
    assert batch.predictions is not None and batch.predictions[0] == 0.0254181120544672
    assert batch.event_ids == ["aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]
    assert batch.inference_ids == [None]
    assert batch.inference_times is not None
    assert str(batch.inference_times[0]) == "2022-02-14T17:25:49"


def test_writer_field_layout_and_base64_rule() -> None:
    # Given a content type the endpoint config does not list as CSV or JSON
    line = encode_capture_record(
        input_data=b"1,2,x",
        input_content_type="application/x-npy",
        output_data=b"\xff\x00",
        output_content_type="application/octet-stream",
        event_id="ev",
        inference_time=datetime(2026, 11, 1, 11, 15, 49, tzinfo=UTC) + timedelta(microseconds=5),
        inference_id="caller-1",
    )
    doc = orjson.loads(line)
    # Then both payloads are BASE64, keys follow SageMaker's order, and the time is whole seconds
    assert list(doc) == ["captureData", "eventMetadata", "eventVersion"]
    assert list(doc["captureData"]["endpointInput"]) == [
        "observedContentType",
        "mode",
        "data",
        "encoding",
    ]
    assert doc["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(doc["captureData"]["endpointInput"]["data"]) == b"1,2,x"
    assert doc["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    assert base64.b64decode(doc["captureData"]["endpointOutput"]["data"]) == b"\xff\x00"
    assert doc["eventMetadata"] == {
        "eventId": "ev",
        "inferenceId": "caller-1",
        "inferenceTime": "2026-11-01T11:15:49Z",
    }
    assert doc["eventVersion"] == "0"
    assert line.endswith(b"}\n") and line.count(b"\n") == 1


def test_capture_options_leave_out_input_or_output() -> None:
    # Given output capture switched off
    line = encode_capture_record(
        input_data=b"1",
        input_content_type="text/csv",
        output_data=b"0.1",
        output_content_type="text/csv",
        event_id="e",
        inference_time=T0,
        capture_output=False,
    )
    # Then only endpointInput is written
    assert list(orjson.loads(line)["captureData"]) == ["endpointInput"]


def test_capture_key_layout_uses_the_utc_hour() -> None:
    # Given a time in a UTC+2 zone
    from datetime import timezone

    when = datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    # Then the key's hour folder is the UTC hour (23:00 the day before)
    assert capture_key("capture", "ep", "AllTraffic", when, "part-1") == (
        "capture/ep/AllTraffic/2026/10/31/23/part-1.jsonl"
    )
    assert capture_key("", "ep", "v", T0, "x.jsonl") == "ep/v/2026/11/01/10/x.jsonl"
    assert format_inference_time(T0) == "2026-11-01T10:15:49Z"


def test_iter_capture_paths_walks_folders_in_sorted_order(tmp_path: Path) -> None:
    # Given capture files in two hour folders, and a file that is not capture
    for rel in (
        "ep/v/2026/11/01/11/b.jsonl",
        "ep/v/2026/11/01/10/z.jsonl",
        "ep/v/2026/11/01/10/a.jsonl",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "ep/readme.txt").write_text("x")
    # Then the .jsonl files come out in key order; a file is itself; a missing path is an error
    got = [p.relative_to(tmp_path).as_posix() for p in iter_capture_paths(tmp_path)]
    assert got == [
        "ep/v/2026/11/01/10/a.jsonl",
        "ep/v/2026/11/01/10/z.jsonl",
        "ep/v/2026/11/01/11/b.jsonl",
    ]
    assert list(iter_capture_paths(tmp_path / got[0])) == [tmp_path / got[0]]
    with pytest.raises(DriftloopError, match="no such capture file"):
        list(iter_capture_paths(tmp_path / "nope"))


# ------------------------------------------------------------------------ round trips


ROWS = [("31", "52000.5", "paris"), ("", "nan", ""), ("47", "-1e3", "lyon"), ("inf", "7", "nice")]
EXPECTED_AGE = [31.0, np.nan, 47.0, np.inf]
EXPECTED_INCOME = [52000.5, np.nan, -1000.0, 7.0]
EXPECTED_CITY = ["paris", None, "lyon", "nice"]


def csv_payload(rows: list[tuple[str, str, str]]) -> str:
    return "".join(",".join(r) + "\n" for r in rows)


def json_payload(rows: list[tuple[str, str, str]]) -> str:
    """The rows as a JSON array of arrays: null for missing, inf as the string "inf"."""

    def num(v: str) -> str:
        return "null" if v in ("", "nan") else '"inf"' if v == "inf" else repr(float(v))

    return (
        "["
        + ",".join(f"[{num(a)},{num(b)},{orjson.dumps(c or None).decode()}]" for a, b, c in rows)
        + "]"
    )


@pytest.mark.parametrize("as_base64", [False, True])
@pytest.mark.parametrize("kind", ["csv", "json"])
@pytest.mark.parametrize("multi", [False, True])
def test_round_trip_every_encoding_single_and_multi_row(
    kind: str, as_base64: bool, multi: bool
) -> None:
    # Given the same rows written as CSV or JSON, as text or BASE64, one or many per request
    lines = []
    groups = [ROWS] if multi else [[r] for r in ROWS]
    for g, rows in enumerate(groups):
        if kind == "csv":
            data, ctype = csv_payload(rows), "text/csv"
            out, otype = "".join(f"0.{i + 1},1\n" for i in range(len(rows))), "text/csv"
        else:
            data, ctype = json_payload(rows), "application/json"
            scores = [{"score": float(f"0.{i + 1}"), "label": 1} for i in range(len(rows))]
            out, otype = orjson.dumps({"predictions": scores}).decode(), "application/json"
        lines.append(
            record(
                data,
                out,
                event_id=f"ev{g}",
                content_type=ctype,
                output_type=otype,
                inference_id=f"inf{g}" if g % 2 else None,
                as_base64=as_base64,
                when=T0 + timedelta(seconds=g),
            )
        )
    # When they are read back
    batch, log = read_all(b"".join(lines))
    # Then every value, score and identity survives
    assert log.total == 0, log.to_dict()
    assert batch is not None and batch.n_rows == 4
    np.testing.assert_array_equal(batch.columns["age"], EXPECTED_AGE)
    np.testing.assert_array_equal(batch.columns["income"], EXPECTED_INCOME)
    assert batch.columns["city"].tolist() == EXPECTED_CITY
    if multi:
        np.testing.assert_array_equal(batch.predictions, [0.1, 0.2, 0.3, 0.4])
        assert batch.event_ids == ["ev0:0", "ev0:1", "ev0:2", "ev0:3"]
        assert batch.inference_ids == [None] * 4
        assert set(batch.inference_times.astype(str).tolist()) == {"2026-11-01T10:15:49"}
    else:
        np.testing.assert_array_equal(batch.predictions, [0.1] * 4)
        assert batch.event_ids == ["ev0", "ev1", "ev2", "ev3"]
        assert batch.inference_ids == [None, "inf1", None, "inf3"]
        assert batch.inference_times.astype(str).tolist() == [
            f"2026-11-01T10:15:{49 + i}" for i in range(4)
        ]


@pytest.mark.parametrize(
    ("payload", "expected_ages"),
    [
        ('[[1, 2, "a"], [3, 4, "b"]]', [1.0, 3.0]),
        ('[{"age": 1, "income": 2, "city": "a"}, {"city": "b", "age": 3}]', [1.0, 3.0]),
        ('{"instances": [[1, 2, "a"], [3, 4, "b"]]}', [1.0, 3.0]),
        ('{"instances": [{"features": [1, 2, "a"]}, {"features": [3, 4, "b"]}]}', [1.0, 3.0]),
        ('{"features": [1, 2, "a"]}', [1.0]),
        ('[5, "6.5", "c"]', [5.0]),
        ('{"age": 9, "income": null, "city": "x"}', [9.0]),
    ],
)
def test_json_request_shapes(payload: str, expected_ages: list[float]) -> None:
    # Given a JSON request in one of the shapes scikit-learn and SageMaker containers accept
    scores = orjson.dumps([0.5] * len(expected_ages)).decode()
    line = record(payload, scores, content_type="application/json", output_type="application/json")
    # When it is read
    batch, log = read_all(line)
    # Then its rows come out in order, a missing key being a missing value
    assert log.total == 0, log.to_dict()
    assert batch is not None
    np.testing.assert_array_equal(batch.columns["age"], expected_ages)
    np.testing.assert_array_equal(batch.predictions, [0.5] * len(expected_ages))


@pytest.mark.parametrize(
    ("output", "otype", "expected"),
    [
        ('{"predictions": [{"score": 0.25, "label": 0}]}', "application/json", 0.25),
        ('{"predictions": [0.75]}', "application/json", 0.75),
        ("[0.125]", "application/json", 0.125),
        ("0.625", "application/json", 0.625),
        ("0.375,1\n", "text/csv", 0.375),
        ('"0.5","1"', "text/csv", 0.5),
    ],
)
def test_output_shapes(output: str, otype: str, expected: float) -> None:
    # Given a one-row request with a model output in a supported shape
    batch, log = read_all(record("1,2,a", output, output_type=otype))
    # Then its score is read
    assert log.total == 0, log.to_dict()
    assert batch is not None and batch.predictions is not None
    assert batch.predictions.tolist() == [expected]


def test_quoted_csv_values() -> None:
    # Given CSV with quoted fields, one holding the delimiter
    batch, log = read_all(record('"1","2.5","new york, ny"\n3,4,"x"', "0.1\n0.2"))
    # Then quotes are removed and the comma stays inside the value
    assert log.total == 0
    assert batch is not None
    assert batch.columns["city"].tolist() == ["new york, ny", "x"]
    np.testing.assert_array_equal(batch.columns["income"], [2.5, 4.0])


def test_missing_output_is_not_malformed() -> None:
    # Given a record captured without its output
    line = encode_capture_record(
        input_data=b"1,2,a",
        input_content_type="text/csv",
        output_data=None,
        output_content_type=None,
        event_id="e",
        inference_time=T0,
    )
    batch, log = read_all(line)
    # Then the row is kept with a NaN prediction and nothing is counted
    assert log.total == 0
    assert batch is not None and np.isnan(batch.predictions).all()


def test_non_ascii_categories_on_the_fast_path() -> None:
    # Given UTF-8 category names and long values
    long_name = "x" * 100
    batch, log = read_all(record("1,2,café") + record("3,4,Zürich") + record(f"5,6,{long_name}"))
    assert log.total == 0
    assert batch is not None
    assert batch.columns["city"].tolist() == ["café", "Zürich", long_name]


def test_numbers_match_python_float_exactly() -> None:
    # Given many decimal strings, some with exponents, signs and many digits
    rng = np.random.default_rng(3)
    values = [
        f"{v:.{d}f}" for v, d in zip(rng.normal(0, 1e4, 400), rng.integers(0, 12, 400), strict=True)
    ]
    values += [
        "1e-7",
        "-2.5E+3",
        "+4",
        ".5",
        "5.",
        "007",
        "123456789012345678",
        "0.1000000000000000055511151231257827",
    ]
    lines = b"".join(record(f"{v},{v},c") for v in values)
    batch, log = read_all(lines)
    # Then every value is exactly what float() gives
    assert log.total == 0
    assert batch is not None
    assert batch.columns["age"].tolist() == [float(v) for v in values]


# ------------------------------------------------------------------------ malformed input

GOOD = record("1,2,a")


@pytest.mark.parametrize(
    ("line", "reason", "rows_kept"),
    [
        (b'{"captureData": {"endpointInput": ', "invalid_json", 0),
        (b"\xff\xfe not utf-8\n", "invalid_json", 0),
        (b"[1, 2]\n", "invalid_json", 0),
        (
            b'{"eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-01T10:00:00Z"}}\n',
            "missing_capture_data",
            0,
        ),
        (GOOD.replace(b'"eventId":"e",', b""), "missing_event_metadata", 0),
        (GOOD.replace(b"2026-11-01T10:15:49Z", b"yesterday"), "bad_inference_time", 0),
        (GOOD.replace(b'"encoding":"CSV"}', b'"encoding":"ROT13"}', 1), "bad_encoding", 0),
        (record("1,2,a", as_base64=True).replace(b'"data":"', b'"data":"!!', 1), "bad_base64", 0),
        (
            record(b"\xff\xfe,2,a", as_base64=True),
            "undecodable_payload",
            0,
        ),
        (record("[[1, 2", content_type="application/json"), "bad_json_payload", 0),
        (
            record("1,2,a", content_type="application/x-npy", as_base64=True),
            "unsupported_content_type",
            0,
        ),
        (record(""), "empty_payload", 0),
        (record("1,2"), "wrong_column_count", 0),
        (record("1,2,a,b"), "wrong_column_count", 0),
        (record("1,abc,a"), "unparseable_value", 0),
        (record("1,2,a\n3,4\n5,6,c", "0.1\n0.2\n0.3"), "wrong_column_count", 2),
        (record("1,2,a", "zero point five"), "bad_prediction", 1),
        (record("1,2,a\n3,4,b", "0.1"), "prediction_count_mismatch", 2),
        (
            record("1,2,a", '{"predictions": [0.1, 0.2]}', output_type="application/json"),
            "prediction_count_mismatch",
            1,
        ),
    ],
)
def test_malformed_input_is_counted_with_its_reason_and_line(
    line: bytes, reason: str, rows_kept: int
) -> None:
    # Given a good record, the bad line, and another good record
    blob = GOOD + (line if line.endswith(b"\n") else line + b"\n") + GOOD
    # When the file is read
    batch, log = read_all(blob)
    # Then the bad line is counted once under its reason at line 2, and nothing raises
    assert dict(log.by_reason) == {reason: 1}, log.to_dict()
    assert log.examples[0].startswith(f"f.jsonl:2: {reason}")
    assert reason in DROPPING_REASONS | KEEPING_REASONS
    assert batch is not None and batch.n_rows == 2 + rows_kept
    if reason in KEEPING_REASONS:
        # the rows are kept, their predictions unknown
        assert np.isnan(batch.predictions[1 : 1 + rows_kept]).all()
        assert not np.isnan(batch.predictions[[0, -1]]).any()


def test_multi_row_request_keeps_row_identity_when_a_row_is_dropped() -> None:
    # Given a three-row request whose middle row is bad
    batch, log = read_all(record("1,2,a\n3,x,b\n5,6,c", "0.1\n0.2\n0.3", event_id="E"))
    # Then rows 0 and 2 keep their ids and scores
    assert log.by_reason == {"unparseable_value": 1}
    assert batch is not None
    assert batch.event_ids == ["E:0", "E:2"]
    np.testing.assert_array_equal(batch.predictions, [0.1, 0.3])


def test_nan_and_empty_are_missing_and_inf_is_kept() -> None:
    batch, log = read_all(record("nan,,\n,inf,x\nNaN,-inf, ", "0.1\n0.2\n0.3"))
    assert log.total == 0
    assert batch is not None
    np.testing.assert_array_equal(batch.columns["age"], [np.nan] * 3)
    np.testing.assert_array_equal(batch.columns["income"], [np.nan, np.inf, -np.inf])
    assert batch.columns["city"].tolist() == [None, "x", " "]


def test_blank_and_empty_files() -> None:
    # Given an empty file and a file of blank lines
    for blob in (b"", b"\n\n  \n\r\n"):
        batch, log = read_all(blob)
        # Then there are no rows and nothing is malformed
        assert batch is None and log.total == 0


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DriftloopError, match="nope.jsonl: cannot open capture file"):
        list(read_capture(tmp_path / "nope.jsonl", schema=SCHEMA, malformed=MalformedLog()))


# ------------------------------------------------------------------------ chunking and streaming


def mixed_file() -> bytes:
    rng = np.random.default_rng(5)
    lines: list[bytes] = []
    for i in range(120):
        kind = i % 6
        a, b = rng.normal(size=2).round(3)
        if kind == 0:
            lines.append(record(f"{a},{b},c{i % 3}", f"{i / 200}", event_id=f"e{i}"))
        elif kind == 1:
            lines.append(record(f"{a},{b},x\n{b},{a},y", "0.1\n0.2", event_id=f"e{i}"))
        elif kind == 2:
            lines.append(
                record(
                    f'[[{a}, {b}, "j"]]',
                    "[0.3]",
                    event_id=f"e{i}",
                    content_type="application/json",
                    output_type="application/json",
                )
            )
        elif kind == 3:
            lines.append(record(f'{a},{b},"q,{i}"', "0.4", event_id=f"e{i}"))
        elif kind == 4:
            lines.append(record(f"{a},bad,z", "0.5", event_id=f"e{i}"))
        else:
            lines.append(record(f"{a},{b},b64", "0.6", event_id=f"e{i}", as_base64=True))
        if i % 17 == 0:
            lines.append(b"not json\n")
    return b"".join(lines)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_chunking_gives_the_same_result_as_one_chunk(chunk_rows: int) -> None:
    # Given a file mixing every path (fast CSV, multi-row, JSON, quoted, bad, BASE64)
    blob = mixed_file()
    whole, log_whole = read_all(blob)
    # When it is read in small chunks
    log = MalformedLog()
    batches = list(
        read_capture(io.BytesIO(blob), schema=SCHEMA, malformed=log, chunk_rows=chunk_rows)
    )
    # Then no batch exceeds the chunk size and the concatenation equals the single read
    assert all(0 < b.n_rows <= chunk_rows for b in batches)
    assert_same(concat(batches, SCHEMA), whole)
    assert log.by_reason == log_whole.by_reason
    assert log_whole.by_reason == {"unparseable_value": 20, "invalid_json": 8}


def test_text_and_base64_paths_agree() -> None:
    # Given the same requests written as CSV text (vectorised path) and BASE64 (careful path)
    rows = [f"{i * 0.1:.1f},{i},{'abc'[i % 3]}" for i in range(50)] + [",,", "1,2,", "inf,-1e-3,z"]
    text = b"".join(record(r, f"0.{i}", event_id=f"e{i}") for i, r in enumerate(rows))
    b64 = b"".join(
        record(r, f"0.{i}", event_id=f"e{i}", as_base64=True) for i, r in enumerate(rows)
    )
    # Then both read to identical batches
    assert_same(read_all(text)[0], read_all(b64)[0])


class CountingStream(io.BytesIO):
    """Remembers how far into the data the reader has read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.max_pos = 0

    def read(self, size: int | None = -1) -> bytes:
        out = super().read(size)
        self.max_pos = max(self.max_pos, self.tell())
        return out

    def __iter__(self) -> Iterator[bytes]:  # like an S3 StreamingBody: 1 KB chunks, not lines
        return iter(lambda: self.read(1024), b"")


def test_reader_streams_instead_of_loading_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a file of 20,000 records (several MB) behind a stream that does not iterate by
    # line, read in blocks of 1 MB
    monkeypatch.setattr(capture_module, "_READ_BLOCK", 1 << 20)
    blob = b"".join(record(f"{i},1,a", event_id=f"e{i}") for i in range(20_000))
    stream = CountingStream(blob)
    # When the first batch of 10 rows is taken
    it: Iterator[FeatureBatch] = read_capture(
        stream, schema=SCHEMA, malformed=MalformedLog(), chunk_rows=10
    )
    first = next(it)
    # Then it holds the first ten records, and only one read block was consumed
    assert first.n_rows == 10 and first.event_ids == [f"e{i}" for i in range(10)]
    assert stream.max_pos <= (1 << 20) < len(blob) / 2
    # and the rest streams through to the end
    assert 10 + sum(b.n_rows for b in it) == 20_000


def test_reads_from_a_path(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(record("1,2,a") + record("3,4,b"))
    log = MalformedLog()
    batches = list(read_capture(p, schema=SCHEMA, malformed=log))
    assert [b.n_rows for b in batches] == [2]
    assert log.total == 0


@pytest.mark.parametrize("with_output", [True, False])
@pytest.mark.parametrize("with_inference_id", [True, False])
def test_exact_layout_path_agrees_with_the_json_path(
    with_output: bool, with_inference_id: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given lines exactly as SageMaker writes them (the byte-level path reads these)
    lines = [
        encode_capture_record(
            input_data=f"{i * 1.5},{-i},{'abc'[i % 3] if i % 4 else ''}".encode(),
            input_content_type="text/csv",
            output_data=f"0.{i}".encode() if with_output else None,
            output_content_type="text/csv",
            event_id=f"ev-{i}",
            inference_id=f"iid-{i}" if with_inference_id else None,
            inference_time=T0 + timedelta(seconds=i),
        )
        for i in range(40)
    ]
    exact = b"".join(lines)
    # and the same records with a space after each line's closing brace (valid JSON, other layout)
    spaced = b"".join(line[:-1] + b" \n" for line in lines)
    # When both are read by the Python paths (watching which path takes each block;
    # the compiled scanner, which would take the first, is compared in test_capture_engines)
    monkeypatch.setattr(capture_module, "_scan", None)
    taken: list[bool] = []
    original = capture_module._ChunkParser._extract_canonical

    def spy(self: Any, *args: Any) -> bool:
        taken.append(original(self, *args))
        return taken[-1]

    monkeypatch.setattr(capture_module._ChunkParser, "_extract_canonical", spy)
    a, log_a = read_all(exact)
    b, log_b = read_all(spaced)
    assert taken == [True, False]
    # Then they are identical, identities included
    assert log_a.total == log_b.total == 0
    assert_same(a, b)
    assert a is not None and a.inference_ids is not None
    assert a.inference_ids[3] == ("iid-3" if with_inference_id else None)
    assert a.event_ids is not None and a.event_ids[39] == "ev-39"
    assert a.columns["city"].tolist()[:5] == [None, "b", "c", "a", None]
    assert str(a.inference_times[39]) == "2026-11-01T10:16:28"
    if with_output:
        assert a.predictions is not None and a.predictions[7] == 0.7


def test_inference_times_read_as_numpy_reads_them() -> None:
    # Given times in SageMaker's form and odd ones (bad dates, hours, seconds, zones)
    times = [
        "2026-11-01T10:15:49Z", "2024-02-29T00:00:00Z", "2026-02-29T10:15:49Z",
        "2026-11-01T24:00:00Z", "2026-11-01T23:59:60Z", "2026-11-01T10:15:4xZ",
        "2026-11-01T10:15:49", "2026-11-01T10:15:49.250Z", "2026-11-01Z", "2026Z", "Z", "",
    ]  # fmt: skip
    # When the reader turns them into epoch seconds
    parser = capture_module._ChunkParser(SCHEMA, MalformedLog(), "f")
    got = parser._seconds(times).tolist()

    # Then each is what numpy's own parse of the string gives (NAT_SECONDS if it refuses)
    def numpy_seconds(t: str) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                v = np.datetime64(t, "s")
            except ValueError:
                return capture_module.NAT_SECONDS
        return capture_module.NAT_SECONDS if np.isnat(v) else int(v.astype(np.int64))

    assert got == [numpy_seconds(t) if t[:1].isdigit() else capture_module.NAT_SECONDS
                   for t in times]  # fmt: skip
    assert got[0] == 1793528149 and got[2] == capture_module.NAT_SECONDS
