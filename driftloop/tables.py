"""Tables with a header row (CSV, parquet) read as FeatureBatch chunks, and schema inference.

Training sets and ad-hoc samples arrive as tables rather than capture files: the baseline
is built from one, and `driftloop drift` accepts one as the current data. Columns are
matched by header name (order does not matter, extra columns are ignored), rows stream
in chunks so memory stays flat, and bad rows are counted like the capture reader counts
them (`wrong_column_count`, `unparseable_value`, `undecodable_line`, with `file:line`).
A missing feature column stops the work with a DriftloopError naming file and column.

CSV rows go through the same numpy tokeniser as capture payloads; a chunk holding quotes
goes through the csv module instead (and is extended until its quotes balance, so a
quoted value may span lines). Parquet needs pyarrow, imported only when a parquet file
is read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np

from driftloop.batch import FeatureBatch
from driftloop.capture import _CsvBlock, _parse_number
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.schema import Schema

__all__ = ["PARQUET_SUFFIXES", "infer_schema", "read_table"]

PARQUET_SUFFIXES = (".parquet", ".pq")
_BUFFER = 1 << 20


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _pyarrow_parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DriftloopError(
            f"{path}: reading parquet needs pyarrow (pip install 'driftloop[ml]')"
        ) from exc
    return pq


# --------------------------------------------------------------------------- CSV


def _read_header(fh: IO[bytes], path: str) -> list[str]:
    first = fh.readline()
    if not first.strip():
        raise DriftloopError(f"{path}:1: no header row")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DriftloopError(f"{path}:1: header is not UTF-8 ({exc.reason})") from exc
    if text.count('"') % 2:
        raise DriftloopError(f"{path}:1: header has an unbalanced quote")
    names = [h.strip() for h in next(csv.reader([text.rstrip("\r\n")]))]
    dupes = sorted({h for h in names if names.count(h) > 1})
    if dupes:
        raise DriftloopError(f"{path}:1: duplicate column names in the header: {dupes}")
    return names


def _column_index(header: list[str], schema: Schema, path: str) -> list[int]:
    index = []
    for name in schema.features:
        if name not in header:
            raise DriftloopError(f"{path}: column {name!r} is not in the header")
        index.append(header.index(name))
    return index


def _chunks(fh: IO[bytes], n: int) -> Iterator[list[bytes]]:
    """Lists of up to n lines; a chunk with an open quoted value takes lines until it closes."""
    while True:
        lines = list(islice(fh, n))
        if not lines:
            return
        quotes = sum(line.count(b'"') for line in lines)
        while quotes % 2:
            more = fh.readline()
            if not more:
                break
            lines.append(more)
            quotes += more.count(b'"')
        yield lines


class _TableChunk:
    """Turns one chunk of CSV lines into a FeatureBatch."""

    def __init__(self, schema: Schema, header: list[str], malformed: MalformedLog, name: str):
        self.schema = schema
        self.width = len(header)
        self.index = _column_index(header, schema, name)
        self.malformed = malformed
        self.name = name

    def decode(self, lines: list[bytes], first_lineno: int) -> list[str]:
        try:
            return b"".join(lines).decode("utf-8").split("\n")[: len(lines)]
        except UnicodeDecodeError:
            out = []
            for i, line in enumerate(lines):
                try:
                    out.append(line.decode("utf-8").rstrip("\n"))
                except UnicodeDecodeError as exc:
                    self.malformed.add(
                        "undecodable_line", f"{self.name}:{first_lineno + i}", exc.reason
                    )
                    out.append("")
            return out

    def parse(self, lines: list[bytes], first_lineno: int) -> FeatureBatch | None:
        texts = self.decode(lines, first_lineno)
        if any('"' in t for t in texts):
            return self._parse_quoted(texts, first_lineno)
        texts = [t[:-1] if t.endswith("\r") else t for t in texts]
        blk = _CsvBlock.from_texts("\n".join(texts), texts)
        good = blk.n_commas == self.width - 1
        for r in np.flatnonzero(~good).tolist():
            self.malformed.add(
                "wrong_column_count",
                f"{self.name}:{first_lineno + int(blk.row_payload[r])}",
                f"{int(blk.n_commas[r]) + 1} fields, expected {self.width}",
            )
        starts, ends = blk.field_bounds(good, self.width)
        linenos = first_lineno + blk.row_payload[good]
        cols: dict[str, np.ndarray] = {}
        row_ok = np.ones(len(linenos), dtype=bool)
        pairs = list(zip(self.schema.features, self.index, strict=True))
        # in file order: the numeric tokens are cut out of each row left to right
        numeric = sorted(
            ((f, j) for f, j in pairs if not self.schema.is_categorical(f)), key=lambda p: p[1]
        )
        block = None
        if numeric:
            js = [j for _, j in numeric]
            block = blk.numeric_block(starts, ends, js)
        position = {f: k for k, (f, _) in enumerate(numeric)}
        for fname, j in pairs:
            s, e = starts[:, j], ends[:, j]
            if self.schema.is_categorical(fname):
                cols[fname] = blk.categorical(s, e)
                continue
            if block is not None:
                cols[fname] = block[:, position[fname]]
                continue
            cols[fname] = blk.numeric_counted(
                s, e, row_ok, self.malformed, fname, lambda r: f"{self.name}:{int(linenos[r])}"
            )
        if not row_ok.all():
            cols = {f: c[row_ok] for f, c in cols.items()}
        n = int(row_ok.sum())
        return FeatureBatch(columns=cols, n_rows=n) if n else None

    def _parse_quoted(self, texts: list[str], first_lineno: int) -> FeatureBatch | None:
        reader = csv.reader(io.StringIO("\n".join(texts)))
        values: list[list[Any]] = []
        for row in reader:
            lineno = first_lineno + reader.line_num - 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != self.width:
                self.malformed.add(
                    "wrong_column_count",
                    f"{self.name}:{lineno}",
                    f"{len(row)} fields, expected {self.width}",
                )
                continue
            out: list[Any] = []
            for fname, j in zip(self.schema.features, self.index, strict=True):
                v = row[j]
                if self.schema.is_categorical(fname):
                    out.append(v if v != "" else None)
                    continue
                f = _parse_number(v)
                if f is None:
                    self.malformed.add(
                        "unparseable_value", f"{self.name}:{lineno}", f"{fname}={v[:40]!r}"
                    )
                    break
                out.append(f)
            else:
                values.append(out)
        return _batch_from_rows(values, self.schema)


def _batch_from_rows(values: list[list[Any]], schema: Schema) -> FeatureBatch | None:
    if not values:
        return None
    cols: dict[str, np.ndarray] = {}
    for j, fname in enumerate(schema.features):
        column = [r[j] for r in values]
        if schema.is_categorical(fname):
            arr = np.empty(len(column), dtype=object)
            arr[:] = column
            cols[fname] = arr
        else:
            cols[fname] = np.asarray(column, dtype=np.float64)
    return FeatureBatch(columns=cols, n_rows=len(values))


def _read_csv(
    path: Path, schema: Schema, chunk_rows: int, malformed: MalformedLog, name: str
) -> Iterator[FeatureBatch]:
    try:
        fh = path.open("rb", buffering=_BUFFER)
    except OSError as exc:
        raise DriftloopError(f"{path}: cannot open table ({exc.strerror})") from exc
    with fh:
        header = _read_header(fh, name)
        chunk = _TableChunk(schema, header, malformed, name)
        lineno = 2
        for lines in _chunks(fh, chunk_rows):
            batch = chunk.parse(lines, lineno)
            lineno += len(lines)
            if batch is not None:
                yield batch


# --------------------------------------------------------------------------- parquet


def _arrow_numeric(
    col: Any, fname: str, first_row: int, name: str, malformed: MalformedLog
) -> tuple[np.ndarray, np.ndarray | None]:
    """A parquet column as float64 (nulls NaN); strings are parsed and bad ones counted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    t = col.type
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or (pa.types.is_decimal(t))
    ):
        arr = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(arr, dtype=np.float64), None
    # strings (or anything else) in a numeric column: parse value by value
    vals = np.empty(len(col), dtype=np.float64)
    bad = np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):
        f = float("nan") if v is None else _parse_number(str(v))
        if f is None:
            bad[i] = True
            malformed.add(
                "unparseable_value", f"{name}:row {first_row + i}", f"{fname}={str(v)[:40]!r}"
            )
            f = float("nan")
        vals[i] = f
    return vals, (bad if bad.any() else None)


def _read_parquet(
    path: Path, schema: Schema, chunk_rows: int, malformed: MalformedLog, name: str
) -> Iterator[FeatureBatch]:
    pq = _pyarrow_parquet(path)
    try:
        pf = pq.ParquetFile(path)
    except OSError as exc:
        raise DriftloopError(f"{path}: cannot read parquet ({exc})") from exc
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for a corrupt file
        raise DriftloopError(f"{path}: not a readable parquet file ({exc})") from exc
    present = set(pf.schema_arrow.names)
    for fname in schema.features:
        if fname not in present:
            raise DriftloopError(f"{path}: column {fname!r} is not in the parquet schema")
    first_row = 1
    for rb in pf.iter_batches(batch_size=chunk_rows, columns=list(schema.features)):
        cols: dict[str, np.ndarray] = {}
        row_ok = np.ones(rb.num_rows, dtype=bool)
        for fname in schema.features:
            col = rb.column(fname)
            if schema.is_categorical(fname):
                arr = np.empty(rb.num_rows, dtype=object)
                arr[:] = [None if v is None or v == "" else str(v) for v in col.to_pylist()]
                cols[fname] = arr
            else:
                vals, bad = _arrow_numeric(col, fname, first_row, name, malformed)
                cols[fname] = vals
                if bad is not None:
                    row_ok &= ~bad
        if not row_ok.all():
            cols = {f: c[row_ok] for f, c in cols.items()}
        n = int(row_ok.sum())
        first_row += rb.num_rows
        if n:
            yield FeatureBatch(columns=cols, n_rows=n)


# --------------------------------------------------------------------------- public


def read_table(
    path: str | Path,
    *,
    schema: Schema,
    chunk_rows: int = 65536,
    malformed: MalformedLog,
    name: str | None = None,
) -> Iterator[FeatureBatch]:
    """Stream the schema's feature columns of a CSV (header row required) or parquet table."""
    if chunk_rows < 1:
        raise DriftloopError(f"chunk_rows must be at least 1, not {chunk_rows}")
    p = Path(path)
    label = name or str(p)
    if not p.exists():
        raise DriftloopError(f"{p}: no such table")
    if _is_parquet(p):
        yield from _read_parquet(p, schema, chunk_rows, malformed, label)
    else:
        yield from _read_csv(p, schema, chunk_rows, malformed, label)


def _looks_numeric(values: Iterable[Any]) -> bool:
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool | int | float):
            continue
        if _parse_number(str(v)) is None:
            return False
    return True


def infer_schema(
    path: str | Path,
    target: str | None = None,
    categorical: Sequence[str] | None = None,
    *,
    exclude: Sequence[str] = (),
    problem: str = "binary",
    sample_rows: int = 1000,
) -> Schema:
    """A Schema from a table's header: every column but `target` and `exclude` is a feature.

    Categorical columns are `categorical` when given, else the columns whose sampled
    values are not all numbers (empty values do not count).
    """
    p = Path(path)
    if not p.exists():
        raise DriftloopError(f"{p}: no such table")
    samples: dict[str, list[Any]]
    if _is_parquet(p):
        pq = _pyarrow_parquet(p)
        try:
            pf = pq.ParquetFile(p)
        except Exception as exc:
            raise DriftloopError(f"{p}: not a readable parquet file ({exc})") from exc
        names = list(pf.schema_arrow.names)
        samples = {n: [] for n in names}
        for rb in pf.iter_batches(batch_size=sample_rows):
            for n in names:
                samples[n] = rb.column(n).to_pylist()
            break
    else:
        with p.open("rb") as fh:
            names = _read_header(fh, str(p))
            text = b"".join(islice(fh, sample_rows)).decode("utf-8", "replace")
        samples = {n: [] for n in names}
        for row in csv.reader(io.StringIO(text)):
            if len(row) != len(names):
                continue
            for n, v in zip(names, row, strict=True):
                if v.strip():
                    samples[n].append(v)
    for col in [target, *exclude]:
        if col is not None and col not in names:
            raise DriftloopError(f"{p}: column {col!r} is not in the header")
    features = tuple(n for n in names if n != target and n not in exclude)
    if not features:
        raise DriftloopError(f"{p}: no feature columns left after the target and exclusions")
    if categorical is not None:
        unknown = sorted(set(categorical) - set(features))
        if unknown:
            raise DriftloopError(f"{p}: categorical columns not among the features: {unknown}")
        cats = frozenset(categorical)
    else:
        cats = frozenset(f for f in features if not _looks_numeric(samples[f]))
    return Schema(features=features, categorical=cats, target=target, problem=problem)
