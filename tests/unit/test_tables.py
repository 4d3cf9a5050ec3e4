"""Tables with a header row: CSV and parquet readers, schema inference, counted bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftloop.batch import FeatureBatch
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.schema import Schema
from driftloop.tables import infer_schema, read_table

SCHEMA = Schema(features=("age", "city", "income"), categorical=frozenset({"city"}))


def read(
    path: Path, schema: Schema = SCHEMA, chunk_rows: int = 65536
) -> tuple[FeatureBatch | None, MalformedLog]:
    log = MalformedLog()
    batches = list(
        read_table(path, schema=schema, malformed=log, chunk_rows=chunk_rows, name="t.csv")
    )
    if not batches:
        return None, log
    assert all(0 < b.n_rows <= chunk_rows for b in batches)
    cols = {f: np.concatenate([b.columns[f] for b in batches]) for f in schema.features}
    return FeatureBatch(columns=cols, n_rows=sum(b.n_rows for b in batches)), log


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


def test_columns_are_matched_by_name_and_extras_ignored(tmp_path: Path) -> None:
    # Given a table whose columns are in another order, with an extra column and a label
    p = write(
        tmp_path, "income,label,city,age,notes\n100.5,1,paris,31,x\n,0,,nan,y\n7,1,lyon,-inf,z\n"
    )
    # When it is read with the schema
    batch, log = read(p)
    # Then each feature comes from its named column, empty/nan are missing and inf is kept
    assert log.total == 0
    assert batch is not None and batch.n_rows == 3
    np.testing.assert_array_equal(batch.columns["age"], [31.0, np.nan, -np.inf])
    np.testing.assert_array_equal(batch.columns["income"], [100.5, np.nan, 7.0])
    assert batch.columns["city"].tolist() == ["paris", None, "lyon"]
    assert set(batch.columns) == {"age", "city", "income"}


def test_missing_feature_column_is_an_error_naming_file_and_column(tmp_path: Path) -> None:
    p = write(tmp_path, "age,city\n1,a\n")
    with pytest.raises(DriftloopError, match=r"t.csv: column 'income' is not in the header"):
        read(p)


def test_header_problems_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DriftloopError, match=r"t.csv:1: no header row"):
        read(write(tmp_path, ""))
    with pytest.raises(DriftloopError, match=r"duplicate column names in the header: \['age'\]"):
        read(write(tmp_path, "age,city,income,age\n1,a,2,3\n"))
    with pytest.raises(DriftloopError, match=r"no such table"):
        read(tmp_path / "missing.csv")


def test_bad_rows_are_counted_with_file_and_line(tmp_path: Path) -> None:
    # Given rows with too few fields, too many, a word in a numeric column, bad UTF-8, and blanks
    text = "age,city,income\n1,a,2\n3,b\n4,c,5,6\n\n7,d,lots\n8,e,9\r\n"
    p = tmp_path / "t.csv"
    p.write_bytes(text.encode() + b"10,\xff\xfe,11\n12,f,13\n")
    # When it is read
    batch, log = read(p)
    # Then each bad row is counted under its reason at its line; the good rows remain
    assert dict(log.by_reason) == {
        "wrong_column_count": 2,
        "unparseable_value": 1,
        "undecodable_line": 1,
    }
    assert sorted(log.examples) == sorted(
        [
            "t.csv:3: wrong_column_count: 2 fields, expected 3",
            "t.csv:4: wrong_column_count: 4 fields, expected 3",
            "t.csv:6: unparseable_value: income='lots'",
            "t.csv:8: undecodable_line: invalid start byte",
        ]
    )
    assert batch is not None
    np.testing.assert_array_equal(batch.columns["age"], [1.0, 8.0, 12.0])
    assert batch.columns["city"].tolist() == ["a", "e", "f"]


def test_quoted_values_may_hold_commas_and_newlines(tmp_path: Path) -> None:
    # Given quoted values, one spanning two lines, followed by a bad row
    p = write(tmp_path, 'age,city,income\n"1","new york, ny",2\n3,"two\nlines",4\n5,x\n6,y,7\n')
    # When it is read in chunks of one line (so the quoted value crosses a chunk edge)
    for chunk_rows in (1, 100):
        batch, log = read(p, chunk_rows=chunk_rows)
        # Then the quoted values are whole and the short row is counted at its line
        assert batch is not None
        assert batch.columns["city"].tolist() == ["new york, ny", "two\nlines", "y"]
        np.testing.assert_array_equal(batch.columns["income"], [2.0, 4.0, 7.0])
        assert log.by_reason == {"wrong_column_count": 1}
        assert log.examples == ["t.csv:5: wrong_column_count: 2 fields, expected 3"]


def test_chunking_gives_the_same_result(tmp_path: Path) -> None:
    # Given 500 rows, a few bad
    rng = np.random.default_rng(2)
    lines = ["age,city,income"]
    for i in range(500):
        lines.append(f"{rng.normal():.4f},{'xyz'[i % 3]},{i}" if i % 97 else f"{i},oops")
    p = write(tmp_path, "\n".join(lines) + "\n")
    whole, log = read(p)
    # When it is read seven rows at a time
    chunked, log7 = read(p, chunk_rows=7)
    # Then the rows and the counts are the same
    assert whole is not None and chunked is not None
    for f in SCHEMA.features:
        assert whole.columns[f].tolist() == chunked.columns[f].tolist()
    assert log.by_reason == log7.by_reason == {"wrong_column_count": 6}


def test_infer_schema_guesses_categorical_columns(tmp_path: Path) -> None:
    # Given a table with numeric, text, mostly-empty and label columns
    p = write(tmp_path, "a,b,c,score,label\n1,x,,0.2,1\n2.5,y,3,0.9,0\n,z,4,0.1,1\n")
    # When the schema is inferred with the label as target and the score excluded
    schema = infer_schema(p, target="label", exclude=["score"])
    # Then the text column is categorical and the rest numeric
    assert schema.features == ("a", "b", "c")
    assert schema.categorical == frozenset({"b"})
    assert schema.target == "label"
    # and an explicit list wins, unknown names are errors
    assert infer_schema(p, target="label", categorical=["a", "b"]).categorical == {"a", "b"}
    with pytest.raises(DriftloopError, match="not among the features"):
        infer_schema(p, categorical=["nope"])
    with pytest.raises(DriftloopError, match="column 'nope' is not in the header"):
        infer_schema(p, target="nope")


def test_parquet_round_trip_and_errors(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    # Given a parquet table with typed, null and string-typed numeric columns
    table = pa.table(
        {
            "age": pa.array([1, None, 3, 4], type=pa.int64()),
            "city": pa.array(["a", None, "", "d"]).dictionary_encode(),
            "income": pa.array(["1.5", "x", None, "inf"]),
            "extra": pa.array([0, 0, 0, 0]),
        }
    )
    p = tmp_path / "t.parquet"
    pq.write_table(table, p)
    # When it is read two rows at a time
    batch, log = read(p, chunk_rows=2)
    # Then nulls are missing, the unparseable string row is counted and dropped
    assert log.by_reason == {"unparseable_value": 1}
    assert log.examples == ["t.csv:row 2: unparseable_value: income='x'"]
    assert batch is not None
    np.testing.assert_array_equal(batch.columns["age"], [1.0, 3.0, 4.0])
    np.testing.assert_array_equal(batch.columns["income"], [1.5, np.nan, np.inf])
    assert batch.columns["city"].tolist() == ["a", None, "d"]
    # and the schema is inferred from the arrow types
    schema = infer_schema(p, exclude=["extra"])
    assert schema.features == ("age", "city", "income") and schema.categorical == {"city", "income"}
    pq.write_table(pa.table({"age": [1]}), p)
    with pytest.raises(DriftloopError, match="column 'city' is not in the parquet schema"):
        read(p)
    p.write_bytes(b"not parquet")
    with pytest.raises(DriftloopError, match="not a readable parquet file"):
        read(p)


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an environment where pyarrow cannot be imported
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1")
    # Then reading parquet names the file and the missing package
    with pytest.raises(DriftloopError, match=r"t.parquet: reading parquet needs pyarrow"):
        read(p)
    with pytest.raises(DriftloopError, match=r"reading parquet needs pyarrow"):
        infer_schema(p)
