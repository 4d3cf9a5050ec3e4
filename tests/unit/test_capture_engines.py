"""The engines of the capture reader give identical batches and counts.

The arrow engine only replaces how blocks of well-formed CSV payload rows become
columns, and the native engine (the compiled scanner, driftloop/_scan.c) how pieces of
exact-layout lines do; every decision about what is kept, dropped and counted must stay
the numpy path's. These tests read the same bytes with every engine and compare
everything a FeatureBatch holds plus the MalformedLog (counts and examples), on the
fixtures of the other capture tests and on hypothesis-generated input aimed at number
parsing. The native engine is required here: an install that failed to build it fails.
"""

from __future__ import annotations

import io
import re
import sys
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import driftloop.capture as capture_module
from driftloop.batch import FeatureBatch
from driftloop.capture import encode_capture_record, read_capture
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.profile import build_baseline, profile_batch
from driftloop.schema import Schema
from tests.unit.test_capture import (
    AWS_DOC_LINE,
    GOOD,
    SCHEMA,
    T0,
    assert_same,
    concat,
    mixed_file,
    record,
)
from tests.unit.test_capture_fuzz import SCHEMA as FUZZ_SCHEMA
from tests.unit.test_capture_fuzz import lines_strategy

pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def arrow_on_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrow takes blocks of any size here (by default only blocks of 256+ rows)."""
    monkeypatch.setattr(capture_module._ArrowCsv, "min_rows", 1)


WIDE = Schema(features=("n0", "n1", "n2", "k0", "n3", "k1"), categorical=frozenset({"k0", "k1"}))


def read(
    blob: bytes, engine: str, schema: Schema = SCHEMA, chunk_rows: int = 65536
) -> tuple[FeatureBatch | None, MalformedLog]:
    log = MalformedLog()
    batches = list(
        read_capture(
            io.BytesIO(blob),
            schema=schema,
            malformed=log,
            name="f.jsonl",
            chunk_rows=chunk_rows,
            engine=engine,
        )
    )
    return concat(batches, schema), log


def assert_engines_agree(blob: bytes, schema: Schema = SCHEMA, chunk_rows: int = 65536) -> None:
    """numpy (the reference) and every other engine return and count the same."""
    a, log_a = read(blob, "numpy", schema, chunk_rows)
    for engine in ("arrow", "native", "auto"):
        b, log_b = read(blob, engine, schema, chunk_rows)
        assert_same(a, b)
        assert log_a.by_reason == log_b.by_reason, engine
        assert log_a.examples == log_b.examples, engine


def exact_lines(payloads: list[str], outputs: list[str] | None = None) -> bytes:
    """Records in SageMaker's exact layout (the byte-level path), one per payload."""
    return b"".join(
        encode_capture_record(
            input_data=p.encode("utf-8", "surrogatepass"),
            input_content_type="text/csv",
            output_data=(outputs[i] if outputs else "0.5").encode(),
            output_content_type="text/csv",
            event_id=f"ev-{i}",
            inference_time=T0 + timedelta(seconds=i),
        )
        for i, p in enumerate(payloads)
    )


@pytest.fixture
def arrow_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each call of the arrow block parser produced columns (True) or declined."""
    calls: list[bool] = []
    original = capture_module._ArrowCsv.columns

    def spy(self: Any, blk: Any) -> Any:
        out = original(self, blk)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(capture_module._ArrowCsv, "columns", spy)
    return calls


def test_arrow_parses_clean_blocks_on_both_csv_paths(arrow_calls: list[bool]) -> None:
    # Given exact-layout records and the same records with a space at the end (JSON path),
    # with missing values, nan, inf, signs, exponents and non-ASCII categories
    payloads = [
        f"{i * 1.25},{'' if i % 5 == 0 else -i},{'nan' if i % 7 == 0 else '1e-3'},"
        f"{['café', '', 'nan', 'x y'][i % 4]},{'inf' if i % 9 == 0 else '+.5'},k{i % 3}"
        for i in range(60)
    ]
    exact = exact_lines(payloads)
    spaced = b"".join(line + b" \n" for line in exact.split(b"\n")[:-1])
    for blob in (exact, spaced):
        # When both engines read it
        assert_engines_agree(blob, WIDE)
    # Then arrow really did parse the blocks (both paths, each time the arrow and auto
    # engines ran: the compiled scanner declines the non-ASCII and nan values)
    assert arrow_calls == [True, True] * 2
    batch, log = read(exact, "arrow", WIDE)
    assert log.total == 0 and batch is not None
    # and each batch owns writeable arrays, as with the numpy engine
    raw = list(read_capture(io.BytesIO(exact), schema=WIDE, malformed=log, engine="arrow"))
    assert raw and all(c.flags.writeable for b in raw for c in b.columns.values())
    assert batch.columns["k0"].tolist()[:4] == ["café", None, "nan", "x y"]
    assert batch.columns["n1"].tolist()[:2] == [pytest.approx(float("nan"), nan_ok=True), -1.0]


def test_arrow_declines_blocks_it_would_read_differently(arrow_calls: list[bool]) -> None:
    # Given blocks each holding one value arrow reads unlike float() (or not at all)
    for odd in ("nan(1)", "1_000", " ", "1 2", "\u0661", "0x10", "abc"):
        blob = exact_lines(["1,2,3,a,4,b", f"1,2,{odd},a,4,b", "5,6,7,c,8,d"])
        arrow_calls.clear()
        # When both engines read it
        assert_engines_agree(blob, WIDE)
        # Then arrow declined and the numpy path decided (same rows and counts), in the
        # arrow and auto engines (where the compiled scanner declined first)
        assert arrow_calls == [False, False], odd
    bom = exact_lines(["\ufeff1,2,3,a,4,b", "5,6,7,c,8,d"])
    arrow_calls.clear()
    assert_engines_agree(bom, WIDE)
    assert arrow_calls == [False, False]


def test_engines_agree_on_the_capture_fixtures() -> None:
    # Given the fixtures of the other capture tests: the AWS documentation line, a file
    # mixing every path, and each malformed case between two good records
    blobs = [mixed_file(), GOOD * 3]
    bad_lines = [
        record(""),
        record("1,2"),
        record("1,abc,a"),
        record("1,2,a\n3,4\n5,6,c", "0.1\n0.2\n0.3"),
        record("1,2,a\n\n3,4,b", "0.1\n0.2"),
        record("1,2,a", "zero point five"),
        record("1,2,a\n3,4,b", "0.1"),
        record("nan,,", "0.1"),
        record("inf,-inf,x", "0.1"),
    ]
    blobs += [GOOD + line + GOOD for line in bad_lines]
    for chunk_rows in (1, 7, 65536):
        for blob in blobs:
            # When both engines read it, whole or in small chunks
            # Then batches, counts and examples are identical
            assert_engines_agree(blob, SCHEMA, chunk_rows)
    doc_schema = Schema(features=tuple(f"f{i}" for i in range(69)))
    assert_engines_agree(AWS_DOC_LINE.encode() + b"\n", doc_schema)


def test_small_blocks_use_numpy_by_default(
    arrow_calls: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the default threshold, a block of 255 rows and one of 256
    monkeypatch.setattr(capture_module._ArrowCsv, "min_rows", 256)
    small = exact_lines([f"{i},2,3,a,4,b" for i in range(255)])
    big = exact_lines([f"{i},2,3,a,4,b" for i in range(256)])
    # When each is read with the arrow engine
    assert_engines_agree(small, WIDE)
    assert arrow_calls == []
    assert_engines_agree(big, WIDE)
    # Then only the big block went to arrow
    assert arrow_calls == [True]


def test_engine_choice() -> None:
    # Given a good record
    # When the engine is unknown, Then a clear error
    with pytest.raises(DriftloopError, match="engine must be"):
        read(GOOD, "pandas")


def test_arrow_engine_without_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given pyarrow cannot be imported (as in the Lambda bundle)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    # When the arrow engine is asked for, Then a one-line error; auto quietly uses numpy
    with pytest.raises(DriftloopError, match="needs pyarrow"):
        read(GOOD, "arrow")
    batch, log = read(GOOD * 2, "auto")
    assert log.total == 0 and batch is not None and batch.n_rows == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines_strategy, chunk_rows=st.integers(1, 5))
def test_engines_agree_on_fuzzed_files(lines: list[bytes], chunk_rows: int) -> None:
    # Given a file of valid, mutated and random lines (the reader's fuzz input)
    blob = b"\n".join(lines) + b"\n"
    # When both engines read it, Then everything they return and count is identical
    assert_engines_agree(blob, FUZZ_SCHEMA, chunk_rows)


token = st.one_of(
    st.sampled_from(
        ["", "nan", "NaN", "-nan", "inf", "-Infinity", "1e999", "+1", ".5", "5.", "-0", "1e-400"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="0123456789.eE+-_ (n)aixf\t", max_size=8),
    st.text(max_size=4).filter(lambda t: all(c not in t for c in ',\n\r"\\')),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(token, min_size=6, max_size=6), min_size=1, max_size=8),
    multi=st.booleans(),
)
def test_engines_agree_on_fuzzed_values(rows: list[list[str]], multi: bool) -> None:
    # Given records whose values are odd number spellings, junk and unicode, one row per
    # record (exact layout) or all rows in one multi-row record (JSON path)
    texts = [",".join(r) for r in rows]
    if multi:
        blob = record("\n".join(texts), "\n".join("0.5" for _ in texts))
    else:
        blob = exact_lines(texts)
    # When both engines read it, Then they agree on every value and count
    assert_engines_agree(blob, WIDE)


@pytest.mark.parametrize("engine", ["numpy", "arrow", "native"])
def test_exact_layout_check_rejects_any_changed_skeleton_byte(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three exact-layout lines, the middle one with one byte of its fixed skeleton
    # (keys, punctuation) changed to another byte of the same kind, lengths unchanged
    good = exact_lines(["1,2,3,a,4,b"] * 3).split(b"\n")[:-1]
    line = good[1]
    data_at = line.index(b"1,2,3,a,4,b")
    variable = set(range(data_at, data_at + len(b"1,2,3,a,4,b")))
    for value in (b"ev-1", b"2026-11-01T10:15:50Z", b"CSV", b"0.5", b"text/csv"):
        at = line.index(value)
        variable |= set(range(at, at + len(value)))
    blobs = []
    for i, byte in enumerate(line):
        if i in variable or byte == ord('"'):
            continue
        swapped = ord("x") if byte != ord("x") else ord("y")
        if byte in b"{}:,":
            swapped = ord(" ") if byte != ord(" ") else ord(",")
        mutated = line[:i] + bytes([swapped]) + line[i + 1 :]
        blobs.append(b"\n".join([good[0], mutated, good[2]]) + b"\n")
    assert len(blobs) > 150
    # When each block is read with the exact-layout path and without it
    results = [read(blob, engine, WIDE) for blob in blobs]
    monkeypatch.setattr(capture_module._ChunkParser, "_extract_canonical", lambda *a: False)
    ref_engine = "numpy" if engine == "native" else engine  # the scanner is exact-layout only
    for blob, (batch, log) in zip(blobs, results, strict=True):
        ref, ref_log = read(blob, ref_engine, WIDE)
        # Then the results are identical: no changed line passed as the exact layout
        assert_same(batch, ref)
        assert log.by_reason == ref_log.by_reason, blob


def test_all_missing_columns(arrow_calls: list[bool]) -> None:
    # Given a block where one numeric and one categorical column are empty in every row
    blob = exact_lines(["1,,3,,4,b", "5,,7,,8,d"])
    # When both engines read it, Then arrow parsed it and the columns are all missing
    assert_engines_agree(blob, WIDE)
    assert arrow_calls == [True]
    batch, _ = read(blob, "arrow", WIDE)
    assert batch is not None and batch.columns["k0"].tolist() == [None, None]
    assert batch.columns["n1"].tolist() == [pytest.approx(float("nan"), nan_ok=True)] * 2


@pytest.mark.parametrize("read_block", [5, 300])
@pytest.mark.parametrize("piece_lines", [1, 3, 8192])
def test_lines_split_across_reads_and_pieces(
    read_block: int, piece_lines: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file mixing every path, its last line without a newline, and a blank line
    blob = mixed_file() + b"\n" + exact_lines(["1,2,a", "3,4,b"]) + GOOD.rstrip(b"\n")
    whole, log_whole = read(blob, "auto", SCHEMA, chunk_rows=5)
    # When it is read in tiny blocks and cut into small pieces
    monkeypatch.setattr(capture_module, "_READ_BLOCK", read_block)
    original = capture_module._iter_line_chunks

    def small_pieces(fh: Any, n: int, **kw: Any) -> Any:
        return original(fh, n, piece_lines, **kw)

    monkeypatch.setattr(capture_module, "_iter_line_chunks", small_pieces)
    small, log_small = read(blob, "auto", SCHEMA, chunk_rows=5)
    # Then nothing changes: rows, identities, line numbers in the examples, counts
    assert_same(whole, small)
    assert log_whole.by_reason == log_small.by_reason
    assert log_whole.examples == log_small.examples
    assert whole is not None and whole.event_ids is not None and whole.event_ids[-1] == "e"


# --------------------------------------------------------------------------- native


@pytest.fixture
def native_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each piece offered to the compiled scanner was taken (True) or declined."""
    calls: list[bool] = []
    original = capture_module._NativeScan.scan

    def spy(self: Any, *args: Any) -> bool:
        calls.append(original(self, *args))
        return calls[-1]

    monkeypatch.setattr(capture_module._NativeScan, "scan", spy)
    return calls


def test_native_takes_clean_pieces_and_declines_the_rest(
    native_calls: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file in pieces of 4 lines: clean exact-layout lines, then pieces each
    # holding one line the scanner must leave to the Python paths
    monkeypatch.setattr(
        capture_module, "_iter_line_chunks",
        lambda fh, n, original=capture_module._iter_line_chunks, **kw: original(fh, n, 4, **kw),
    )  # fmt: skip
    clean = [f"{i}.5,-{i},1e{i % 5},k{i % 3},{i},x" for i in range(8)]
    odd = [
        "1,2,3,a,4",  # wrong column count
        "1,2,nan,a,4,b",  # nan: the Python paths decide (a missing value)
        "1,2,abc,a,4,b",  # unparseable
        "1,2,3,café,4,b",  # non-ASCII
        "1, 2,3,a,4,b",  # a space float() strips
        "",  # empty payload
    ]
    payloads = clean + [v for o in odd for v in (o, "1,2,3,a,4,b", "5,6,7,c,8,d", "9,9,9,e,9,f")]
    blob = exact_lines(payloads)
    # When every engine reads it, whole and in chunks of 5 rows
    for chunk_rows in (65536, 5):
        native_calls.clear()
        assert_engines_agree(blob, WIDE, chunk_rows)
    # Then the scanner took the clean pieces and declined each piece with an odd line
    native_calls.clear()
    batch, log = read(blob, "native", WIDE)
    assert native_calls == [True, True] + [False] * len(odd)
    assert batch is not None and batch.n_rows == len(payloads) - 3
    assert log.by_reason == {"wrong_column_count": 1, "unparseable_value": 1, "empty_payload": 1}
    # and its columns are right, not just equal to the other engines'
    assert batch.columns["n0"].tolist()[:3] == [0.5, 1.5, 2.5]
    assert batch.columns["n2"].tolist()[:3] == [1.0, 10.0, 100.0]
    assert batch.columns["k0"].tolist()[:4] == ["k0", "k1", "k2", "k0"]
    assert batch.predictions is not None and batch.predictions.tolist()[:2] == [0.5, 0.5]
    assert batch.event_ids is not None and batch.event_ids[:2] == ["ev-0", "ev-1"]
    assert all(c.flags.writeable for c in batch.columns.values())


def test_native_engine_without_the_compiled_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the compiled scanner was not built (an install without a C compiler)
    monkeypatch.setattr(capture_module, "_scan", None)
    # When the native engine is asked for, Then a one-line error; auto quietly does without
    with pytest.raises(DriftloopError, match="compiled scanner"):
        read(GOOD, "native")
    batch, log = read(GOOD * 2, "auto")
    assert log.total == 0 and batch is not None and batch.n_rows == 2


def test_native_reads_a_bad_time_through_the_python_paths(native_calls: list[bool]) -> None:
    # Given exact-layout lines, one with an inferenceTime that is not a time
    blob = exact_lines(["1,2,3,a,4,b"] * 3)
    blob = blob.replace(b"2026-11-01T10:15:50Z", b"2026-13-01T10:15:50Z")
    # When every engine reads it, Then the bad record is counted the same way
    assert_engines_agree(blob, WIDE)
    batch, log = read(blob, "native", WIDE)
    assert native_calls[-1] is False
    assert log.by_reason == {"bad_inference_time": 1} and batch is not None
    assert batch.n_rows == 2


number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.3f}"),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.20e}"),
    st.builds(
        lambda sign, a, b, e: f"{sign}{a}.{b}" + (f"e{e}" if e is not None else ""),
        st.sampled_from(["", "-", "+"]),
        st.text(alphabet="0123456789", min_size=0, max_size=25),
        st.text(alphabet="0123456789", min_size=1, max_size=25),
        st.none() | st.integers(-340, 320),
    ),
    st.sampled_from(
        [
            "9007199254740993", "9007199254740992.5", "1e22", "1e23", "4.9e-324",
            "2.4703282292062327e-324", "2.2250738585072011e-308", "1.7976931348623157e308",
            "1e309", "0.1e-400", "123456789012345678901234567890", "00000001.10000000",
            "-0", "-0.0e5", "0.30000000000000004", "1E+2", "5.", ".5",
        ]
    ),  # fmt: skip
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(number, min_size=1, max_size=20))
def test_native_numbers_are_exactly_floats(values: list[str], native_calls: list[bool]) -> None:
    # Given exact-layout records whose numeric values are decimal spellings of every kind
    # (short, 17 and 21 significant digits, long mantissas, extreme exponents)
    texts = [f"{v},{v},0,k,{v},x" for v in values]
    blob = exact_lines(texts, values)
    # When the native engine reads them
    batch, log = read(blob, "native", WIDE)
    # Then the scanner read them (it declined none) and every value is exactly what
    # float() gives, bit for bit, prediction included
    assert native_calls and all(native_calls)
    assert log.total == 0 and batch is not None
    expected = np.array([float(v) for v in values])
    for name in ("n0", "n1", "n3"):
        assert batch.columns[name].view(np.int64).tolist() == expected.view(np.int64).tolist()
    assert batch.predictions is not None
    assert batch.predictions.view(np.int64).tolist() == expected.view(np.int64).tolist()


def test_native_batches_carry_codes_that_profile_the_same(
    native_calls: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given exact-layout records in pieces of 3 lines, whose categories first appear in
    # different pieces (so each piece numbers them its own way), with missing values
    monkeypatch.setattr(
        capture_module, "_iter_line_chunks",
        lambda fh, n, original=capture_module._iter_line_chunks, **kw: original(fh, n, 3, **kw),
    )  # fmt: skip
    k0 = ["b", "", "a", "c", "b", "", "d", "a", "a", "e", "", "b"]
    blob = exact_lines([f"{i},1,2,{v},3,{'xy'[i % 2]}" for i, v in enumerate(k0)])
    # When the native engine reads it in one chunk, and in chunks of 5 rows
    for chunk_rows in (65536, 5):
        batches = list(
            read_capture(
                io.BytesIO(blob), schema=WIDE, malformed=MalformedLog(), chunk_rows=chunk_rows,
                engine="native",
            )
        )  # fmt: skip
        assert all(native_calls)
        # Then each batch's codes decode to its categorical columns, numbered chunk-wide
        for b in batches:
            assert b.codes is not None and set(b.codes) == {"k0", "k1"}
            for name, (codes, names) in b.codes.items():
                decoded = [None if c < 0 else names[c] for c in codes.tolist()]
                assert decoded == b.columns[name].tolist()
        assert [v or None for v in k0] == [x for b in batches for x in b.columns["k0"]]
        if chunk_rows == 65536:
            assert len(batches) == 1
            whole = batches[0]
    # And profiling by codes gives what profiling the strings gives
    # (on a reference made of the first rows, so that "d" and "e" are unseen categories)
    head = whole.rows(0, 6)
    ref = build_baseline([FeatureBatch(columns=head.columns, n_rows=head.n_rows)], WIDE)
    plain = FeatureBatch(columns=whole.columns, n_rows=whole.n_rows)
    assert profile_batch(whole, ref).to_dict() == profile_batch(plain, ref).to_dict()
    assert profile_batch(whole, ref).features["k0"].to_dict()["n_missing"] == 3


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=300) | st.text(alphabet="ab\n", max_size=300).map(str.encode))
def test_native_newlines_are_numpys(blob: bytes) -> None:
    # Given any bytes, When the compiled scanner finds the newlines
    got = capture_module._native_newlines(blob)
    # Then it finds exactly the positions numpy finds, as int64
    assert got.dtype == np.int64
    assert got.tolist() == capture_module._numpy_newlines(blob).tolist()


@pytest.mark.parametrize("engine", ["native", "numpy"])
def test_a_mapped_file_reads_as_its_stream_does(
    engine: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file (read through mmap) of every kind of line, its last without a newline,
    # in read blocks much smaller than the file, so pages are let go as reading moves on
    monkeypatch.setattr(capture_module, "_READ_BLOCK", 4096)
    blob = (mixed_file() + exact_lines([f"{i},2,{i}" for i in range(400)]) + GOOD).rstrip(b"\n")
    path = tmp_path / "capture.jsonl"
    path.write_bytes(blob)
    released: list[int] = []
    original = capture_module._MappedFile.read

    def spy(self: Any, n: int) -> Any:
        out = original(self, n)
        released.append(self.released)
        return out

    monkeypatch.setattr(capture_module._MappedFile, "read", spy)
    # When it is read by path and as a stream of the same bytes
    log_path, log_stream = MalformedLog(), MalformedLog()
    by_path = list(read_capture(path, schema=SCHEMA, malformed=log_path, engine=engine))
    by_stream = list(
        read_capture(
            io.BytesIO(blob), schema=SCHEMA, malformed=log_stream, name=str(path), engine=engine
        )
    )
    # Then rows, counts and examples are the same, and the mapping was read and let go
    assert_same(concat(by_path, SCHEMA), concat(by_stream, SCHEMA))
    assert log_path.by_reason == log_stream.by_reason and log_path.total > 0
    assert log_path.examples == log_stream.examples
    assert len(released) > 10 and released[-1] > 0
    # And an empty file reads as no rows
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert list(read_capture(empty, schema=SCHEMA, malformed=MalformedLog(), engine=engine)) == []


def test_native_many_distinct_categories_and_times(native_calls: list[bool]) -> None:
    # Given exact-layout records whose categorical values are nearly all distinct (the
    # scanner's tables grow many times) and whose times repeat in runs and come back
    payloads = [f"{i},{i % 7},{i},v{i},{i},w{i % 1500}" for i in range(5000)]
    blob = exact_lines(payloads)
    times = [f"2026-11-01T10:{(i // 40) % 60:02d}:00Z".encode() for i in range(5000)]
    lines = blob.split(b"\n")[:-1]
    blob = b"".join(
        re.sub(rb'"inferenceTime":"[^"]*"', b'"inferenceTime":"' + t + b'"', line) + b"\n"
        for line, t in zip(lines, times, strict=True)
    )
    # When every engine reads it, Then they agree, and the scanner read every piece
    assert_engines_agree(blob, WIDE)
    native_calls.clear()
    batch, log = read(blob, "native", WIDE)
    assert native_calls and all(native_calls) and log.total == 0 and batch is not None
    assert batch.columns["k0"].tolist()[4998:] == ["v4998", "v4999"]
    assert str(batch.inference_times[4999]) == "2026-11-01T10:04:00"


def test_native_reads_multi_row_requests(native_calls: list[bool]) -> None:
    # Given exact-layout requests of several CSV rows each (escaped newlines in the
    # line), with blank rows, a trailing newline, missing values and one-row requests
    reqs = [
        ("1,2,3,a,4,b\n5,6,7,c,8,d", "0.1\n0.2", "m1", "i-1"),
        ("\n9,9,9,e,9,f\n\n1.5,,2,,3,g\n", "0.3,1\n\n0.4,0\n", "m2", None),
        ("7,7,7,h,7,i", "0.9", "one", "i-3"),
    ]
    blob = b"".join(
        record(d, o, event_id=e, inference_id=i, when=T0 + timedelta(seconds=k))
        for k, (d, o, e, i) in enumerate(reqs)
    )
    # When every engine reads them, Then they agree, and the scanner took the piece
    assert_engines_agree(blob, WIDE)
    native_calls.clear()
    batch, log = read(blob, "native", WIDE)
    assert native_calls == [True] and log.total == 0 and batch is not None
    # and each row has its request's identity, time and its own prediction
    assert batch.event_ids == ["m1:0", "m1:1", "m2:0", "m2:1", "one"]
    assert batch.inference_ids == ["i-1", "i-1", None, None, "i-3"]
    assert batch.predictions is not None
    assert batch.predictions.tolist() == [0.1, 0.2, 0.3, 0.4, 0.9]
    assert batch.columns["n0"].tolist() == [1.0, 5.0, 9.0, 1.5, 7.0]
    assert batch.columns["k0"].tolist() == ["a", "c", "e", None, "h"]
    assert [str(t) for t in batch.inference_times][2:4] == ["2026-11-01T10:15:50"] * 2


@pytest.mark.parametrize(
    ("data", "output"),
    [
        ("1,2,3,a,4,b\n5,6,7,c,8,d", "0.1"),  # fewer predictions than rows
        ("1,2,3,a,4,b", "0.1\n0.2"),  # more predictions than rows
        ("1,2,3,a,4,b\n5,6,7,c,8", "0.1\n0.2"),  # a short row
        ("1,2,3,a,4,b\r\n5,6,7,c,8,d", "0.1\n0.2"),  # CRLF: the csv module's business
        ("\n\n", "0.1"),  # rows that are all blank
        ('1,2,3,"a",4,b', "0.1"),  # a quoted field
    ],
)
def test_native_declines_requests_the_python_paths_must_judge(
    data: str, output: str, native_calls: list[bool]
) -> None:
    # Given such a request between two good ones
    blob = GOOD_WIDE + record(data, output, event_id="odd") + GOOD_WIDE
    # When every engine reads it, Then they agree, and the scanner declined the piece
    assert_engines_agree(blob, WIDE)
    native_calls.clear()
    read(blob, "native", WIDE)
    assert native_calls == [False]


GOOD_WIDE = exact_lines(["1,2,3,a,4,b"])


# --------------------------------------------------------------------------- JSON requests

json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "b c", "1.5", " 2 ", "nan", "x", "a,b", "é"]),
    st.sampled_from([0, -0.0, 0.0, 1e300, -1e-300, 5e-324, 2**64 - 1, -(2**63)]),
    st.lists(st.integers(0, 3), max_size=2),
)


def _json_request(shape: str, rows: list[list[Any]]) -> Any:
    names = list(WIDE.features)
    if shape == "instances":
        return {"instances": rows}
    if shape == "features":
        return {"features": rows}
    if shape == "lists":
        return rows
    if shape == "flat":
        return rows[0]
    if shape == "objects":
        return [dict(zip(names, r, strict=False)) for r in rows]
    return dict(zip(names, rows[0], strict=False))  # one object keyed by feature name


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["instances", "features", "lists", "flat", "objects", "object"]),
            st.lists(st.lists(json_value, min_size=5, max_size=7), min_size=1, max_size=3),
            st.sampled_from(["predictions", "list", "number", "none", "bad", "short"]),
        ),
        min_size=2,
        max_size=6,
    ),
    typed=st.booleans(),
)
def test_json_requests_read_together_as_one_by_one(
    requests: list[tuple[str, list[list[Any]], str]], typed: bool
) -> None:
    # Given JSON requests of every shape the reader knows, with values of every JSON type
    # (or, half the time, values of the column's own type), and outputs good and bad
    lines = []
    for i, (shape, rows, out_shape) in enumerate(requests):
        if typed:
            rows = [[1.5, 2, None, "k", -3e5, "" if j else None] for j, _ in enumerate(rows)]
        if shape in ("flat", "object"):
            rows = rows[:1]
        n = len(rows)
        output = {
            "predictions": {"predictions": [0.25] * n},
            "list": [0.5] * n,
            "number": 0.75,
            "none": None,
            "bad": {"nothing": 1},
            "short": {"predictions": [0.1] * (n + 1)},
        }[out_shape]
        lines.append(
            encode_capture_record(
                input_data=orjson.dumps(_json_request(shape, rows)),
                input_content_type="application/json",
                output_data=None if output is None else orjson.dumps(output),
                output_content_type="application/json",
                event_id=f"j{i}",
                inference_time=T0 + timedelta(seconds=i),
            )
        )
    blob = b"".join(lines)
    # When it is read with the JSON requests taken together, and one by one
    together, log_together = read(blob, "numpy", WIDE)
    original = capture_module._ChunkParser._json_requests
    try:
        capture_module._ChunkParser._json_requests = lambda self, slow, rows, scores: slow
        alone, log_alone = read(blob, "numpy", WIDE)
    finally:
        capture_module._ChunkParser._json_requests = original
    # Then rows, predictions, identities, counts and examples are the same
    assert_same(together, alone)
    assert log_together.by_reason == log_alone.by_reason
    assert log_together.examples == log_alone.examples
    # and the compiled scanner, which reads such requests itself, agrees with both
    assert_engines_agree(blob, WIDE)


def test_json_requests_take_the_batch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given well-typed JSON requests
    rows = [[1.5, 2, None, "k", -3e5, ""], [0.5, 1, 3, None, 1e-3, "z"]]
    blob = b"".join(
        record(orjson.dumps({"instances": rows}).decode(), '{"predictions": [0.1, 0.2]}',
               event_id=f"j{i}", content_type="application/json",
               output_type="application/json")
        for i in range(3)
    )  # fmt: skip
    columns_calls: list[bool] = []
    original = capture_module._ChunkParser._json_columns

    def spy(self: Any, all_rows: Any) -> Any:
        out = original(self, all_rows)
        columns_calls.append(out is not None)
        return out

    monkeypatch.setattr(capture_module._ChunkParser, "_json_columns", spy)
    # When they are read by the Python paths (the compiled scanner would take them first)
    batch, log = read(blob, "numpy", WIDE)
    # Then they were converted column by column, and read right
    assert columns_calls == [True] and log.total == 0 and batch is not None
    assert batch.columns["n1"].tolist() == [2.0, 1.0] * 3
    assert batch.columns["k0"].tolist() == ["k", None] * 3
    assert batch.columns["k1"].tolist() == [None, "z"] * 3
    assert batch.predictions is not None and batch.predictions.tolist() == [0.1, 0.2] * 3
    assert batch.event_ids == ["j0:0", "j0:1", "j1:0", "j1:1", "j2:0", "j2:1"]


def test_native_reads_json_requests(native_calls: list[bool]) -> None:
    # Given JSON requests in the shapes the scanner reads, with whitespace (escaped
    # newlines too), every value type a column takes, and each output shape
    bodies = [
        ('{"instances": [[1, -0, 2.5e3, "a", null, "b c"], [true, false, -1E-2, "", 7, "x,y"]]}',
         '{"predictions": [0.1, 0.2]}'),
        ('{ "features" :[ [ 3 , 4 , 5 , "k" , 6 , "z" ] ] }', '{"scores": [1]}'),
        ('[[12345678901234567890123, 0.1, -0.0, "q", 1e-400, "r"]]', '[0.3]'),
        ('[9, 8, 7, "flat", 6, "row"]', '{"score": 0.25}'),
        ('{"instances":\n [[1,2,3,"a",4,"b"],\n  [5,6,7,"c",8,"d"]]\n}', '{"outputs": [0.5, 0.6]}'),
    ]  # fmt: skip
    blob = b"".join(
        record(orjson.loads(f'"{i}"') if "\\n" in i else i, o, event_id=f"j{k}",
               content_type="application/json", output_type="application/json",
               when=T0 + timedelta(seconds=k))
        for k, (i, o) in enumerate(bodies)
    )  # fmt: skip
    # When every engine reads them, Then they agree, and the scanner read the piece
    assert_engines_agree(blob, WIDE)
    native_calls.clear()
    batch, log = read(blob, "native", WIDE)
    assert native_calls == [True] and log.total == 0 and batch is not None
    # and the values are JSON's, as orjson and float() give them
    assert batch.columns["n0"].tolist() == [1.0, 1.0, 3.0, 1.2345678901234568e22, 9.0, 1.0, 5.0]
    n1 = batch.columns["n1"]
    assert n1.tolist() == [0.0, 0.0, 4.0, 0.1, 8.0, 2.0, 6.0]
    assert not np.signbit(n1[0])  # -0 is the integer zero
    assert np.signbit(batch.columns["n2"][3])  # -0.0 is a float
    assert batch.columns["k0"].tolist() == ["a", None, "k", "q", "flat", "a", "c"]
    assert batch.columns["k1"].tolist() == ["b c", "x,y", "z", "r", "row", "b", "d"]
    assert batch.predictions is not None
    assert batch.predictions.tolist() == [0.1, 0.2, 1.0, 0.3, 0.25, 0.5, 0.6]
    assert batch.event_ids == ["j0:0", "j0:1", "j1", "j2", "j3", "j4:0", "j4:1"]


@pytest.mark.parametrize(
    ("body", "output"),
    [
        ('{"instances": [[1, 2, 3, "a", 4]]}', "[0.1]"),  # a short row
        ('{"instances": [[1, 2, "3", "a", 4, "b"]]}', "[0.1]"),  # a string in a numeric column
        ('{"instances": [[1, 2, 3, 5, 4, "b"]]}', "[0.1]"),  # a number in a categorical one
        ('{"instances": [[01, 2, 3, "a", 4, "b"]]}', "[0.1]"),  # not JSON
        ('{"instances": [[1e999, 2, 3, "a", 4, "b"]]}', "[0.1]"),  # infinity
        ('{"instances": [[1, 2, 3, "a", 4, "b"]], "extra": 1}', "[0.1]"),  # another key
        ('[{"n0": 1}]', "[0.1]"),  # rows as objects
        ('{"instances": []}', "[]"),  # no rows
        ('{"instances": [[1, 2, 3, "a\\"b", 4, "b"]]}', "[0.1]"),  # an escape in a string
        ('{"instances": [[1, 2, 3, "a", 4, "b"]]}', "[0.1, 0.2]"),  # two predictions
        ('{"instances": [[1, 2, 3, "a", 4, "b"]]}', '{"predictions": [true]}'),
    ],
)
def test_native_declines_json_the_python_paths_must_judge(
    body: str, output: str, native_calls: list[bool]
) -> None:
    # Given such a request between two good ones
    good = record('{"instances": [[1, 2, 3, "a", 4, "b"]]}', "[0.5]",
                  content_type="application/json", output_type="application/json")  # fmt: skip
    odd = record(body, output, event_id="odd", content_type="application/json",
                 output_type="application/json")  # fmt: skip
    blob = good + odd + good
    # When every engine reads it, Then they agree, and the scanner declined the piece
    assert_engines_agree(blob, WIDE)
    native_calls.clear()
    read(blob, "native", WIDE)
    assert native_calls == [False]


def test_native_reads_json_requests_of_many_rows(native_calls: list[bool]) -> None:
    # Given JSON requests of four rows each (no escaped newline anywhere: the rows are
    # counted by their brackets when the arrays are sized)
    rows = [[i, i, i, "a", i, "b"] for i in range(4)]
    blob = b"".join(
        record(orjson.dumps({"instances": rows}).decode(), '{"predictions": [0.5, 0.5, 0.5, 0.5]}',
               event_id=f"m{k}", content_type="application/json", output_type="application/json")
        for k in range(3)
    )  # fmt: skip
    # When every engine reads them, Then they agree and the scanner read all twelve rows
    assert_engines_agree(blob, WIDE)
    native_calls.clear()
    batch, log = read(blob, "native", WIDE)
    assert native_calls == [True] and log.total == 0 and batch is not None
    assert batch.n_rows == 12 and batch.event_ids is not None and batch.event_ids[-1] == "m2:3"
