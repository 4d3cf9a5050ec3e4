"""SageMaker Data Capture: the S3 key layout, a writer, and a fast streaming reader.

The capture files are the one input every check shares, and SageMaker (or the local
endpoint) writes them in a fixed JSON Lines layout. This module writes that layout
exactly, so local runs produce files Model Monitor users recognise, and reads it fast
enough that a drift check over an hour of traffic fits in one Lambda: records stream in
chunks (memory stays flat however large the file), JSON goes through orjson once per
line, and the common CSV payload is tokenised and converted to floats with numpy over a
whole chunk at a time instead of value by value. Anything unusual (quoted CSV, JSON
payloads, odd rows) takes a careful per-record path that yields the same result.

Two optional accelerators sit in front of those paths (`read_capture(engine=...)`:
"auto", "numpy", "arrow" or "native"). Where the package was installed with a C
compiler, the compiled scanner driftloop._scan (driftloop/_scan.c) reads a piece of
lines in SageMaker's exact layout with CSV or JSON payloads (one row or many) in a single
pass, straight into column arrays: no JSON parser, no per-value Python object but the
category names.
When pyarrow is importable (the CLI's install; not the Lambda bundle, which stays
small), blocks of well-formed CSV payload rows are parsed by pyarrow's CSV reader on one
thread. Each only ever takes input it reads exactly as the numpy path would (numbers
bit for bit as float() gives them) and declines anything else, which the numpy path then
reads and counts, so every engine gives identical batches and counts.

Bad input never raises: each skipped record or row is counted in the `MalformedLog`
with a reason and `file:line`. The reasons, and what happens to the data:

dropped (the record or row yields no features)
    ``invalid_json``            the line is not a JSON object
    ``missing_capture_data``    no ``captureData.endpointInput`` with a string ``data``
    ``missing_event_metadata``  no ``eventMetadata`` with string ``eventId`` and ``inferenceTime``
    ``bad_inference_time``      ``inferenceTime`` is not an ISO-8601 UTC time
    ``bad_encoding``            ``encoding`` is not CSV, JSON or BASE64
    ``bad_base64``              a BASE64 payload that does not decode
    ``undecodable_payload``     decoded bytes that are not UTF-8
    ``bad_json_payload``        a JSON payload that does not parse or has no rows
    ``unsupported_content_type`` a payload that is neither CSV nor JSON
    ``empty_payload``           a request with no rows at all
    ``wrong_column_count``      a row (one per bad row) with the wrong number of fields
    ``unparseable_value``       a row (one per bad row) with a non-numeric value in a
                                numeric column; a row is kept only if every value parses

kept (the rows are kept; the predictions of that record are NaN)
    ``bad_prediction``          an output payload that does not parse
    ``prediction_count_mismatch`` an output with a different number of rows than the input

Missing values are not malformed: an empty CSV field, ``nan`` or JSON ``null`` is a
missing value (NaN / None) and the profiler counts it. ``inf`` and ``-inf`` are kept as
such; the profiler counts them as invalid. Blank lines are ignored.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import gc
import importlib.util
import io
import mmap
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from driftloop.batch import FeatureBatch, concat_batches
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.schema import Schema

try:  # the optional compiled scanner (setup.py builds it where a C compiler is at hand)
    from driftloop import _scan
except ImportError:  # pragma: no cover - exercised by the install without a compiler
    _scan = None  # type: ignore[assignment]

__all__ = [
    "DROPPING_REASONS",
    "KEEPING_REASONS",
    "capture_key",
    "encode_capture_record",
    "format_inference_time",
    "iter_capture_paths",
    "read_capture",
]

DROPPING_REASONS = frozenset(
    {
        "invalid_json",
        "missing_capture_data",
        "missing_event_metadata",
        "bad_inference_time",
        "bad_encoding",
        "bad_base64",
        "undecodable_payload",
        "bad_json_payload",
        "unsupported_content_type",
        "empty_payload",
        "wrong_column_count",
        "unparseable_value",
    }
)
KEEPING_REASONS = frozenset({"bad_prediction", "prediction_count_mismatch"})

# Tokens longer than this are converted one by one rather than in the padded numpy
# matrix, so one absurd value cannot blow the matrix up to (rows x its length) bytes.
_MAX_VECTOR_WIDTH = 48
# Bytes per read: several pieces' worth, so that most pieces lie inside one block.
_READ_BLOCK = 8 << 20
# Lines parsed into dicts at a time: bounds the memory the parsed JSON holds at once.
_EXTRACT_LINES = 8192
_TIME_CACHE = 100_000
NAT_SECONDS = int(np.iinfo(np.int64).min)


# bytes that may appear in a run of JSON numbers separated by commas
_JSON_NUMBER_CHARS = b"0123456789.eE+-,"

# --------------------------------------------------------------------------- writing


def capture_key(prefix: str, endpoint: str, variant: str, when: datetime, name: str) -> str:
    """`{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/{name}.jsonl`, the hour in UTC."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    head = prefix.strip("/")
    parts = [head] if head else []
    parts += [endpoint, variant, when.strftime("%Y/%m/%d/%H"), f"{stem}.jsonl"]
    return "/".join(parts)


def format_inference_time(when: datetime) -> str:
    """SageMaker's `inferenceTime`: UTC, whole seconds, a literal Z ("2026-11-01T10:15:49Z")."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _encode_payload(
    data: bytes,
    content_type: str,
    mode: str,
    csv_types: tuple[str, ...],
    json_types: tuple[str, ...],
) -> dict[str, str]:
    media = _media_type(content_type)
    encoding = "BASE64"
    text: str | None = None
    if media in {_media_type(t) for t in csv_types}:
        encoding = "CSV"
    elif media in {_media_type(t) for t in json_types}:
        encoding = "JSON"
    if encoding != "BASE64":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"  # SageMaker cannot write undecodable bytes as text either
    if text is None:
        text = base64.b64encode(data).decode("ascii")
    # Key order is SageMaker's: observedContentType, mode, data, encoding.
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def encode_capture_record(
    *,
    input_data: bytes,
    input_content_type: str,
    output_data: bytes | None,
    output_content_type: str | None,
    event_id: str,
    inference_time: datetime,
    inference_id: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    csv_content_types: tuple[str, ...] = ("text/csv",),
    json_content_types: tuple[str, ...] = ("application/json",),
) -> bytes:
    """One capture line (with its trailing newline) in SageMaker's exact layout.

    Content types listed in `csv_content_types` / `json_content_types` (the endpoint
    config's CaptureContentTypeHeader) are written as text; everything else as BASE64,
    which is what SageMaker does.
    """
    capture: dict[str, Any] = {}
    if capture_input:
        capture["endpointInput"] = _encode_payload(
            input_data, input_content_type, "INPUT", csv_content_types, json_content_types
        )
    if capture_output and output_data is not None:
        capture["endpointOutput"] = _encode_payload(
            output_data,
            output_content_type or "application/octet-stream",
            "OUTPUT",
            csv_content_types,
            json_content_types,
        )
    metadata: dict[str, str] = {"eventId": event_id}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = format_inference_time(inference_time)
    record = {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}
    return orjson.dumps(record) + b"\n"


def iter_capture_paths(path: str | Path) -> Iterator[Path]:
    """The capture files under `path`: the file itself, or every `*.jsonl` below it, sorted."""
    p = Path(path)
    if p.is_file():
        yield p
        return
    if not p.is_dir():
        raise DriftloopError(f"{p}: no such capture file or folder")
    yield from sorted(q for q in p.rglob("*.jsonl") if q.is_file())


# --------------------------------------------------------------------------- reading


class _Rows:
    """Rows gathered from one chunk of records, before they become a FeatureBatch.

    Rows come from two paths (vectorised CSV, per-record fallback); each row carries its
    record's position in the chunk and its index in the request, so the final batch is
    ordered exactly as the file is, whichever path produced it.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.vec_cols: list[dict[str, np.ndarray]] = []
        self.vec_rec: list[np.ndarray] = []
        self.vec_idx: list[np.ndarray] = []
        self.slow_values: list[list[Any]] = []  # one list of converted values per row
        self.slow_rec: list[int] = []
        self.slow_idx: list[int] = []


def _parse_number(token: str) -> float | None:
    """A CSV/JSON-string numeric value: NaN when missing, None when unparseable."""
    t = token.strip()
    if not t:
        return float("nan")
    try:
        return float(t)
    except ValueError:
        return None


def _convert_row(
    values: list[Any], schema: Schema, cat_mask: list[bool]
) -> tuple[list[Any] | None, str]:
    """Convert raw row values (CSV strings or JSON values) in feature order; None if unparseable.

    Categorical: None or "" is missing, a str stays, a bool or number becomes str(v).
    Numeric: None is missing (NaN), a bool or number is float(v), a str goes through
    _parse_number. Anything else makes the row unparseable. The common types are
    dispatched by exact type first (this runs once per row of every JSON payload).
    `cat_mask` says which features are categorical (the parser keeps it).
    """
    out: list[Any] = []
    append = out.append
    for is_cat, v in zip(cat_mask, values, strict=True):
        t = type(v)
        if is_cat:
            if t is str:
                append(v or None)
                continue
            if v is None:
                append(None)
                continue
            if isinstance(v, bool | int | float):
                append(str(v))
                continue
            if isinstance(v, str):
                append(v or None)
                continue
        else:
            if t is float:
                append(v)
                continue
            if v is None:
                append(float("nan"))
                continue
            if isinstance(v, bool | int | float):
                append(float(v))
                continue
            if isinstance(v, str):
                f = _parse_number(v)
                if f is not None:
                    append(f)
                    continue
        name = schema.features[len(out)]
        return None, f"{name}={str(v)[:40]!r}"
    return out, ""


def _json_rows(doc: Any, schema: Schema) -> list[list[Any]] | None:
    """Rows of a JSON request body, as lists in feature order; None if the shape is unknown."""
    if isinstance(doc, dict):
        for key in ("instances", "features"):
            if key in doc:
                return _json_rows(doc[key], schema)
        # a single object keyed by feature name
        return [[doc.get(f) for f in schema.features]]
    if isinstance(doc, list):
        if not doc:
            return []
        if all(isinstance(r, list) for r in doc):
            return [list(r) for r in doc]
        if all(isinstance(r, dict) for r in doc):
            rows: list[list[Any]] = []
            for r in doc:
                if "features" in r and isinstance(r["features"], list):
                    rows.append(list(r["features"]))
                else:
                    rows.append([r.get(f) for f in schema.features])
            return rows
        if all(not isinstance(r, list | dict) for r in doc):
            return [list(doc)]  # a single flat list is one row
    return None


def _json_scores(doc: Any) -> list[float] | None:
    """Scores from a JSON model output: {"predictions": [...]}, a list, or a number."""
    if isinstance(doc, dict):
        for key in ("predictions", "scores", "score", "outputs"):
            if key in doc:
                return _json_scores(doc[key])
        return None
    if isinstance(doc, bool):
        return [float(doc)]
    if isinstance(doc, int | float):
        return [float(doc)]
    if isinstance(doc, str):
        f = _parse_number(doc)
        return None if f is None else [f]
    if isinstance(doc, list):
        out: list[float] = []
        for item in doc:
            if isinstance(item, dict):
                s = item.get("score", item.get("probability", item.get("prediction")))
                if isinstance(s, list):  # per-class probabilities: score of class 1
                    s = s[1] if len(s) == 2 else (max(s) if s else None)
            elif isinstance(item, list):
                s = item[0] if item else None
            else:
                s = item
            if isinstance(s, bool | int | float):
                out.append(float(s))
            elif isinstance(s, str) and (f := _parse_number(s)) is not None:
                out.append(f)
            else:
                return None
        return out
    return None


def _csv_scores(text: str) -> list[float] | None:
    """Scores from a CSV model output: the first field of each non-blank line."""
    out: list[float] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        f = _parse_number(row[0])
        if f is None:
            return None
        out.append(f)
    return out


def _csv_split_rows(text: str) -> list[list[str]]:
    """Rows of a CSV payload (quotes honoured), blank lines dropped."""
    rows = []
    for row in csv.reader(io.StringIO(text)):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        rows.append(row)
    return rows


def _decode_payload(
    part: dict[str, Any], where: str, malformed: MalformedLog
) -> tuple[str, str] | None:
    """(kind, text) of an input/output payload where kind is "csv" or "json"; None if bad."""
    data = part.get("data")
    encoding = part.get("encoding")
    ctype = part.get("observedContentType") or ""
    if not isinstance(data, str) or not isinstance(ctype, str):
        malformed.add("missing_capture_data", where)
        return None
    media = _media_type(ctype)
    if encoding == "BASE64":
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            malformed.add("bad_base64", where, str(exc))
            return None
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            malformed.add("undecodable_payload", where, str(exc))
            return None
    elif encoding not in ("CSV", "JSON"):
        malformed.add("bad_encoding", where, str(encoding))
        return None
    # CSV and JSON encodings mean SageMaker matched the content type to its CSV or JSON
    # list; a BASE64 payload is read according to its content type.
    if encoding == "CSV":
        return "csv", data
    if encoding == "JSON":
        return "json", data
    if "json" in media:
        return "json", data
    if "csv" in media or media == "text/plain":
        return "csv", data
    malformed.add("unsupported_content_type", where, ctype)
    return None


# Lines to parse: their bytes (a view of a read block, or bytes) and where their newlines are.
_Piece = tuple[bytes | memoryview, np.ndarray]

_MARK = "@@driftloop@@"


class _Template:
    """One exact line layout SageMaker writes, with the variable strings taken out.

    A line matches when it has the same number of quotes, no backslash (so no JSON
    escape anywhere) and no control byte, and the bytes outside its variable strings
    equal the skeleton: then each variable string's value is literally the bytes
    between its quotes, and the line parses to the same record orjson would return.
    """

    def __init__(self, with_output: bool, with_inference_id: bool) -> None:
        def part(mode: str) -> dict[str, str]:
            return {"observedContentType": _MARK, "mode": mode, "data": _MARK, "encoding": _MARK}

        capture = {"endpointInput": part("INPUT")}
        roles = ["in_type", "in_data", "in_enc"]
        if with_output:
            capture["endpointOutput"] = part("OUTPUT")
            roles += ["out_type", "out_data", "out_enc"]
        meta = {"eventId": _MARK}
        roles.append("event_id")
        if with_inference_id:
            meta["inferenceId"] = _MARK
            roles.append("inference_id")
        meta["inferenceTime"] = _MARK
        roles.append("time")
        line = orjson.dumps({"captureData": capture, "eventMetadata": meta, "eventVersion": "0"})
        strings = line.split(b'"')[1::2]
        self.quotes = line.count(b'"')
        self.var_index = [i for i, t in enumerate(strings) if t == _MARK.encode()]
        self.roles = dict(zip(roles, self.var_index, strict=True))
        self.skeleton = line.replace(_MARK.encode(), b"") + b"\n"
        pieces = (line + b"\n").split(_MARK.encode())
        self.segment_lengths = np.array([len(x) for x in pieces])
        # The skeleton as 8-byte words (segment, offset in segment, value, mask): a line's
        # skeleton is checked by comparing these words at its segments' starts, which
        # reads ~8x fewer elements than comparing byte by byte. A segment shorter than 8
        # bytes is one masked word; longer ones are covered by (overlapping) whole words.
        words: list[tuple[int, int, int, int]] = []
        for j, piece in enumerate(pieces):
            if len(piece) < 8:
                padded = piece + bytes(8 - len(piece))
                mask = (1 << (8 * len(piece))) - 1
                words.append((j, 0, int.from_bytes(padded, "little"), mask))
                continue
            offsets = list(range(0, len(piece) - 7, 8))
            if offsets[-1] != len(piece) - 8:
                offsets.append(len(piece) - 8)
            for o in offsets:
                words.append((j, o, int.from_bytes(piece[o : o + 8], "little"), (1 << 64) - 1))
        self.word_segment = np.array([w[0] for w in words], dtype=np.int64)
        self.word_offset = np.array([w[1] for w in words], dtype=np.int64)
        self.word_value = np.array([w[2] for w in words], dtype=np.uint64)
        self.word_mask = np.array([w[3] for w in words], dtype=np.uint64)
        self.with_output = with_output
        self.with_inference_id = with_inference_id


_TEMPLATES = {t.quotes: t for t in (_Template(o, i) for o in (True, False) for i in (False, True))}
_CSV_BYTES = np.frombuffer(b"CSV", dtype=np.uint8)


def _span_mask(n: int, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Boolean mask of length n that is True on the sorted, disjoint ranges [s, e).

    Built with one np.repeat of alternating False/True runs: one byte per buffer byte
    and no index arrays, which is what makes cutting many small ranges cheap.
    """
    k = len(s)
    lens = np.empty(2 * k + 1, dtype=np.int64)
    lens[0] = s[0] if k else n
    if k:
        lens[1 : 2 * k : 2] = e - s
        lens[2 : 2 * k : 2] = s[1:] - e[:-1]
        lens[2 * k] = n - e[-1]
    pattern = np.zeros(2 * k + 1, dtype=np.bool_)
    pattern[1::2] = True
    return np.repeat(pattern, lens)


def _compress(buf: np.ndarray, s: np.ndarray, e: np.ndarray, sep: int | None = None) -> np.ndarray:
    """The ranges [s, e) of buf (sorted, disjoint) laid end to end, each followed by sep.

    With a separator, each range takes the byte after it (a delimiter or a closing
    quote in every caller) and that byte is overwritten with sep.
    """
    s = s.ravel()
    e = e.ravel()
    extra = 0 if sep is None else 1
    if sep is not None and len(e) and e[-1] >= len(buf):
        buf = np.append(buf, np.uint8(sep))
    lens = e - s + extra
    ends = np.cumsum(lens)
    total = int(ends[-1]) if len(ends) else 0
    if total * 8 < len(buf):
        # few bytes kept: an index over just those bytes beats a mask over all of buf
        out = buf[np.repeat(s - (ends - lens), lens) + np.arange(total)]
    else:
        out = buf[_span_mask(len(buf), s, e + extra)]
    if extra and total:
        out[ends - 1] = sep
    return out


def _cut(buf: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The ranges [s, e) of buf, each followed by a newline."""
    return _compress(buf, s, e, 10)


def _match_layout(blob: bytes, nl: np.ndarray) -> tuple[np.ndarray, np.ndarray, _Template] | None:
    """(bytes, quote positions (n, quotes), template) when all lines quote like a template.

    `nl` holds the positions of the n newlines of blob, each line's last byte.
    """
    n = len(nl)
    if b"\\" in blob:
        return None
    buf = np.frombuffer(blob, dtype=np.uint8)
    if int(np.count_nonzero(buf < 32)) != n:
        return None
    quotes = np.flatnonzero(buf == 34)
    tmpl = _TEMPLATES.get(len(quotes) // n) if len(quotes) % n == 0 else None
    if tmpl is None:
        return None
    q = quotes.reshape(n, tmpl.quotes)
    # Row i of q holds quotes Q*i .. Q*i+Q-1; all of them lie on line i (after the
    # previous newline, before this one) exactly when every line has Q quotes, since
    # there are n*Q quotes in all.
    if not (q[:, -1] < nl).all() or not (q[1:, 0] > nl[:-1]).all():
        return None
    return buf, q, tmpl


def _strings(buf: np.ndarray, s: np.ndarray, e: np.ndarray) -> list[str]:
    return _cut(buf, s, e).tobytes().decode("utf-8").split("\n")[:-1]


class _Fields:
    """What the extraction step pulls out of a chunk's lines, record by record."""

    def __init__(self) -> None:
        self.payloads: list[str] = []  # CSV-encoded inputs (the vectorised path)
        self.outputs: list[Any] = []
        self.recs: list[int] = []
        self.slow: list[tuple[int, tuple[Any, Any], str]] = []  # (record, (input, output), where)
        self.event_ids: list[str] = []
        self.inference_ids: list[str | None] = []
        self.times: list[str] = []
        self.linenos: list[int] = []
        # blocks cut straight from the bytes: (records, input block, output block or None)
        self.blocks: list[tuple[np.ndarray, _CsvBlock, _CsvBlock | None]] = []


class _ChunkParser:
    """Parses one chunk of capture lines into rows; the per-file state lives here."""

    def __init__(
        self,
        schema: Schema,
        malformed: MalformedLog,
        name: str,
        arrow: _ArrowCsv | None = None,
        native: _NativeScan | None = None,
    ) -> None:
        self.schema = schema
        self.malformed = malformed
        self.name = name
        self.n_features = len(schema.features)
        self.cat_mask = [schema.is_categorical(f) for f in schema.features]
        self.time_cache: dict[str, int] = {}
        self.arrow = arrow
        self.native = native

    def parse(
        self, pieces: list[_Piece], first_lineno: int
    ) -> FeatureBatch | None:
        """Rows of the lines in pieces: (bytes, positions of its newlines), lines whole.

        With the compiled scanner, each piece it reads whole becomes rows at once; runs
        of the other pieces go through the Python paths below. Those count malformed
        input in line order (see `_LineOrderedLog`), so how a chunk is split between the
        two never changes what is counted or the order of the examples.
        """
        if self.native is None:
            return self._parse_general(pieces, first_lineno)
        native = self.native
        # rows: at most one per line plus one per escaped newline (a CSV row break) and
        # per opening bracket (a JSON row)
        rows = sum(len(nl) + _scan.row_breaks(piece) for piece, nl in pieces)
        out = native.start(rows)
        parts: list[FeatureBatch | tuple[int, int] | None] = []  # batches, native row ranges
        run: list[_Piece] = []  # for the Python paths
        run_lineno = lineno = first_lineno
        for piece, nl in pieces:
            at = out.rows
            if native.scan(piece, len(nl), out, self._seconds):
                if run:
                    parts.append(self._parse_general(run, run_lineno))
                    run = []
                if parts and isinstance(parts[-1], tuple):
                    parts[-1] = (parts[-1][0], out.rows)
                else:
                    parts.append((at, out.rows))
            else:
                if not run:
                    run_lineno = lineno
                run.append((piece, nl))
            lineno += len(nl)
        if run:
            parts.append(self._parse_general(run, run_lineno))
        batches = [out.batch(*p) if isinstance(p, tuple) else p for p in parts]
        return concat_batches([b for b in batches if b is not None])

    # ---- pulling the fields out of the JSON lines
    def _parse_general(
        self, pieces: list[_Piece], first_lineno: int
    ) -> FeatureBatch | None:
        """Rows of the lines in pieces, malformed input counted in line order."""
        log = _LineOrderedLog()
        real, self.malformed = self.malformed, log
        gc_was_enabled = gc.isenabled()
        # Parsing allocates many short-lived dicts and lists (none in a cycle); the
        # cyclic collector would rescan them, and the chunk's growing lists of rows,
        # over and over, so it is paused for the chunk.
        gc.disable()
        try:
            blobs = [(p if isinstance(p, bytes) else bytes(p), nl) for p, nl in pieces]
            return self._parse_lines(blobs, first_lineno)
        finally:
            if gc_was_enabled:
                gc.enable()
            self.malformed = real
            log.flush_to(real)

    def _parse_lines(
        self, pieces: list[tuple[bytes, np.ndarray]], first_lineno: int
    ) -> FeatureBatch | None:
        f = _Fields()
        off = 0
        for piece, nl in pieces:
            if not self._extract_canonical(piece, nl, first_lineno + off, f):
                sub = piece.split(b"\n")[:-1]
                if not self._extract_uniform(sub, first_lineno + off, f):
                    self._extract_careful(sub, first_lineno + off, f)
            off += len(nl)
        n_rec = len(f.event_ids)
        if n_rec == 0:
            return None
        keep_rec = self._parse_times(f.times, f.linenos)
        fast_payloads, fast_outputs, fast_recs, slow = f.payloads, f.outputs, f.recs, f.slow
        if not keep_rec.all():
            # Records without a valid time are dropped before their payloads are read, so
            # nothing in them is counted twice.
            kept = [i for i, r in enumerate(fast_recs) if keep_rec[r]]
            fast_payloads = [fast_payloads[i] for i in kept]
            fast_outputs = [fast_outputs[i] for i in kept]
            fast_recs = [fast_recs[i] for i in kept]
            slow = [t for t in slow if keep_rec[t[0]]]
        rows = _Rows(self.schema)
        scores = _Scores(n_rec)
        for rec_arr, in_blk, out_blk in f.blocks:
            self._csv_rows(in_blk, rec_arr, f.linenos, rows, scores)
            if out_blk is not None:
                self._csv_scores(out_blk, rec_arr, f.linenos, scores)
        if fast_payloads:
            self._fast_csv(fast_payloads, fast_outputs, fast_recs, f.linenos, rows, scores, slow)
        if len(slow) >= 2:
            slow = self._json_requests(slow, rows, scores)
        for k, parts, where in slow:
            self._slow_record(k, parts, where, rows, scores)
        return self._assemble(rows, scores, f.event_ids, f.inference_ids)

    def _json_columns(self, all_rows: list[list[Any]]) -> dict[str, np.ndarray] | None:
        """Columns of JSON rows of the right width, or None unless every value converts
        exactly as `_convert_row` converts it (numbers and nulls in numeric columns;
        strings, integers and nulls in categorical ones)."""
        none = type(None)
        cols: dict[str, np.ndarray] = {}
        columns = zip(*all_rows, strict=True)
        for name, is_cat, values in zip(self.schema.features, self.cat_mask, columns, strict=True):
            kinds = set(map(type, values))
            if is_cat:
                if not kinds <= {str, int, none}:
                    return None
                col = np.empty(len(values), dtype=object)
                if int in kinds:
                    values = tuple(str(v) if type(v) is int else v for v in values)
                col[:] = values
                col[col == ""] = None
            else:
                if not kinds <= {float, int, bool, none}:
                    return None
                col = np.array(values, dtype=np.float64)  # None is NaN, a bool or int float(v)
            cols[name] = col
        return cols

    def _json_predictions(self, taken: list[tuple[int, Any, str, int]], scores: _Scores) -> None:
        """Predictions of JSON requests read together; `_slow_scores` takes the odd ones."""
        p_rec: list[int] = []  # records whose predictions were read here
        p_n: list[int] = []  # and how many each has
        p_val: list[float] = []
        for k, out, where, n in taken:
            if out is None:
                continue
            vals = None
            if (
                type(out) is dict
                and out.get("encoding") == "JSON"
                and type(data := out.get("data")) is str
                and type(out.get("observedContentType") or "") is str
            ):
                try:
                    vals = _json_scores(orjson.loads(data))
                except orjson.JSONDecodeError:
                    vals = None
            if vals is not None and len(vals) == n:
                p_rec.append(k)
                p_n.append(n)
                p_val += vals
            else:
                self._slow_scores(k, out, where, scores)  # counts what is wrong with it
        if p_rec:
            counts = np.array(p_n, dtype=np.int64)
            rec_arr = np.repeat(np.array(p_rec, dtype=np.int64), counts)
            scores.add_vector(rec_arr, _positions(counts), np.array(p_val, dtype=np.float64))

    def _json_requests(
        self, slow: list[tuple[int, tuple[Any, Any], str]], rows: _Rows, scores: _Scores
    ) -> list[tuple[int, tuple[Any, Any], str]]:
        """JSON requests read together, column by column; the records left to _slow_record.

        Takes the records whose JSON input parses to rows of the right width (the shapes
        `_json_rows` knows) and, if every numeric column then holds only numbers and
        nulls and every categorical one only strings and nulls, converts the columns at
        once: exactly what `_convert_row` gives row by row, at a fraction of the cost.
        Anything else, in any of them, leaves every record to the per-record path.
        Predictions are read the same way, `_slow_scores` taking the odd ones.
        """
        F = self.n_features
        loads = orjson.loads
        taken: list[tuple[int, Any, str, int]] = []  # record, output, where, rows
        rest: list[tuple[int, tuple[Any, Any], str]] = []
        all_rows: list[list[Any]] = []
        for item in slow:
            k, (inp, out), where = item
            data = inp.get("data")
            if (
                inp.get("encoding") != "JSON"
                or type(data) is not str
                or type(inp.get("observedContentType") or "") is not str
            ):
                rest.append(item)
                continue
            try:
                raw = _json_rows(loads(data), self.schema)
            except orjson.JSONDecodeError:
                raw = None
            if not raw or any(len(r) != F for r in raw):
                rest.append(item)
                continue
            taken.append((k, out, where, len(raw)))
            all_rows += raw
        cols = self._json_columns(all_rows) if taken else None
        if cols is None:
            return slow
        n_rows = np.array([t[3] for t in taken], dtype=np.int64)
        recs = np.array([t[0] for t in taken], dtype=np.int64)
        scores.n_rows[recs] = n_rows
        rows.vec_cols.append(cols)
        rows.vec_rec.append(np.repeat(recs, n_rows))
        rows.vec_idx.append(_positions(n_rows))
        self._json_predictions(taken, scores)
        return rest

    def _extract_canonical(
        self, blob: bytes, nl: np.ndarray, first_lineno: int, f: _Fields
    ) -> bool:
        """The fastest case: every line in SageMaker's exact layout with CSV payloads.

        No JSON parser and no per-line Python: quotes are located with numpy, the layout
        is verified byte for byte against a template, and the payloads are cut out of
        the buffer straight into a CSV block. False (nothing recorded) when any line
        differs, so the general paths handle the block.
        """
        layout = _match_layout(blob, nl)
        if layout is None:
            return False
        buf, q, tmpl = layout
        n = len(nl)

        def bounds(role: str) -> tuple[np.ndarray, np.ndarray]:
            j = tmpl.roles[role]
            return q[:, 2 * j] + 1, q[:, 2 * j + 1]

        # everything outside the variable strings must be the template's skeleton
        var = np.asarray(tmpl.var_index)
        line_start = np.concatenate(([0], nl[:-1] + 1))
        seg_s = np.concatenate((line_start[:, None], q[:, 2 * var + 1]), axis=1)
        seg_e = np.concatenate((q[:, 2 * var] + 1, nl[:, None] + 1), axis=1)
        if not ((seg_e - seg_s) == tmpl.segment_lengths).all():
            return False
        # 8-byte words at any byte offset: a strided view over the block. A masked word
        # of a short segment reads up to 7 bytes past it; only if that passes the end of
        # the block (never in SageMaker's layout, whose last segment is long) is the
        # block copied with padding.
        at = seg_s[:, tmpl.word_segment] + tmpl.word_offset
        room = blob if int(at[-1].max()) + 8 <= len(blob) else blob + bytes(8)
        words = np.ndarray(shape=(len(room) - 7,), dtype="<u8", buffer=room, strides=(1,))
        got = words[at]
        got &= tmpl.word_mask
        if not (got == tmpl.word_value).all():
            return False
        for role in ("in_enc", "out_enc") if tmpl.with_output else ("in_enc",):
            s, e = bounds(role)
            if not ((e - s) == 3).all() or not (buf[s[:, None] + np.arange(3)] == _CSV_BYTES).all():
                return False
        # event id, [inference id,] time: adjacent in every line, cut out in one pass
        roles = (
            ["event_id", "inference_id", "time"] if tmpl.with_inference_id else ["event_id", "time"]
        )
        parts = [bounds(r) for r in roles]
        s = np.stack([p[0] for p in parts], axis=1)
        e = np.stack([p[1] for p in parts], axis=1)
        try:
            if not blob.isascii():
                blob.decode("utf-8")  # orjson would reject the line otherwise
            strings = _strings(buf, s, e)
        except UnicodeDecodeError:
            return False
        k = len(roles)
        event_ids = strings[0::k]
        times = strings[k - 1 :: k]
        iids: list[str | None] = list(strings[1::k]) if tmpl.with_inference_id else [None] * n
        if len(times) != n or len(event_ids) != n or len(iids) != n:
            return False
        if (self._seconds(times) == NAT_SECONDS).any():
            return False
        base = len(f.event_ids)
        rec_arr = np.arange(base, base + n, dtype=np.int64)
        out_blk = None
        if self.arrow is not None:
            # The payloads are cut out once into their own newline-joined blocks (arrow
            # reads the input block as is; commas are then found only if needed).
            in_blk = _CsvBlock.from_cut(buf, *bounds("in_data"))
            if tmpl.with_output:
                out_blk = _CsvBlock.from_cut(buf, *bounds("out_data"))
        else:
            commas = np.flatnonzero(buf == 44)
            in_blk = _CsvBlock.from_spans(blob, buf, commas, *bounds("in_data"))
            if tmpl.with_output:
                out_blk = _CsvBlock.from_spans(blob, buf, commas, *bounds("out_data"))
        f.blocks.append((rec_arr, in_blk, out_blk))
        f.event_ids += event_ids
        f.inference_ids += iids
        f.times += times
        f.linenos += range(first_lineno, first_lineno + n)
        return True

    def _extract_uniform(self, sub: list[bytes], first_lineno: int, f: _Fields) -> bool:
        """The common case: every line a well-formed record (CSV inputs to the vectorised
        path, JSON and BASE64 ones to the per-record path).

        Field by field over the whole block (list comprehensions, no per-record branches);
        False, with nothing recorded, when any line needs the careful path.
        """
        loads = orjson.loads
        try:
            recs = [loads(line) for line in sub]
            cds = [r["captureData"] for r in recs]
            inps = [c["endpointInput"] for c in cds]
            datas = [i["data"] for i in inps]
            encs = [i["encoding"] for i in inps]
            mds = [r["eventMetadata"] for r in recs]
            eids = [m["eventId"] for m in mds]
            times = [m["inferenceTime"] for m in mds]
            outs = [c.get("endpointOutput") for c in cds]
            iids = [m.get("inferenceId") for m in mds]
            # str.join raises TypeError on any non-string: a C-speed type check
            "".join(datas)
            "".join(eids)
            "".join(times)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return False
        n = len(sub)
        if iids.count(None) != n:
            iids = [i if type(i) is str else None for i in iids]
        base = len(f.event_ids)
        if encs.count("CSV") == n:
            f.payloads += datas
            f.outputs += outs
            f.recs += range(base, base + n)
        else:  # other encodings go to the per-record path, as _extract_careful sends them
            for i, enc in enumerate(encs):
                if enc == "CSV":
                    f.payloads.append(datas[i])
                    f.outputs.append(outs[i])
                    f.recs.append(base + i)
                else:
                    f.slow.append((base + i, (inps[i], outs[i]), f"{self.name}:{first_lineno + i}"))
        f.event_ids += eids
        f.inference_ids += iids
        f.times += times
        f.linenos += range(first_lineno, first_lineno + n)
        return True

    def _extract_careful(self, sub: list[bytes], first_lineno: int, f: _Fields) -> None:
        """Line by line, counting every line that is not a usable capture record."""
        malformed = self.malformed
        name = self.name
        loads = orjson.loads
        lineno = first_lineno - 1
        for line in sub:
            lineno += 1
            try:
                rec = loads(line)
                cd = rec["captureData"]
                inp = cd["endpointInput"]
                data = inp["data"]
                md = rec["eventMetadata"]
                eid = md["eventId"]
                itime = md["inferenceTime"]
            except orjson.JSONDecodeError:
                if line.strip():
                    detail = line[:80].decode("utf-8", "replace").strip()
                    malformed.add("invalid_json", f"{name}:{lineno}", detail)
                continue
            except (KeyError, TypeError, IndexError):
                self._classify_missing(line, lineno)
                continue
            if type(eid) is not str or type(itime) is not str:
                malformed.add("missing_event_metadata", f"{name}:{lineno}")
                continue
            if type(data) is not str:
                malformed.add("missing_capture_data", f"{name}:{lineno}")
                continue
            k = len(f.event_ids)
            out = cd.get("endpointOutput")
            if inp.get("encoding") == "CSV":
                f.payloads.append(data)
                f.outputs.append(out)
                f.recs.append(k)
            else:
                f.slow.append((k, (inp, out), f"{name}:{lineno}"))
            f.event_ids.append(eid)
            iid = md.get("inferenceId")
            f.inference_ids.append(iid if type(iid) is str else None)
            f.times.append(itime)
            f.linenos.append(lineno)

    def _classify_missing(self, line: bytes, lineno: int) -> None:
        where = f"{self.name}:{lineno}"
        rec = orjson.loads(line)
        if not isinstance(rec, dict):
            self.malformed.add("invalid_json", where, "not a JSON object")
            return
        cd = rec.get("captureData")
        if (
            not isinstance(cd, dict)
            or not isinstance(cd.get("endpointInput"), dict)
            or ("data" not in cd["endpointInput"])
        ):
            self.malformed.add("missing_capture_data", where)
            return
        self.malformed.add("missing_event_metadata", where)

    def _seconds(self, times: list[str]) -> np.ndarray:
        """Epoch seconds of inferenceTime strings (NAT_SECONDS where unparseable).

        A capture file holds few distinct second-resolution times, so each distinct
        string is parsed once (numpy parses the new ones in one call) and remembered
        for the rest of the file.
        """
        cache = self.time_cache
        new = [t for t in dict.fromkeys(times) if t not in cache]
        if new:
            if len(cache) > _TIME_CACHE:
                cache.clear()
            with warnings.catch_warnings():
                # "2026-11-01T10:15:49Z": numpy warns about the Z but reads it as UTC.
                warnings.simplefilter("ignore")
                try:
                    if not all(t[:1].isdigit() for t in new):
                        raise ValueError("not a time")
                    # numpy reads a trailing Z as UTC, as it reads no zone, but warns
                    # for each such string (15x the parse): SageMaker's exact form goes
                    # in without it
                    naive = [
                        t[:-1] if len(t) == 20 and t[19] == "Z" and t[10] == "T" else t
                        for t in new
                    ]
                    parsed = np.array(naive, dtype="datetime64[s]").astype(np.int64).tolist()
                    cache.update(zip(new, parsed, strict=True))
                except (ValueError, TypeError, OverflowError):
                    for t in new:
                        try:
                            v = np.datetime64(t, "s") if t[:1].isdigit() else None
                            ok = v is not None and not np.isnat(v)
                            cache[t] = (
                                int(v.astype(np.int64)) if ok and v is not None else NAT_SECONDS
                            )
                        except (ValueError, TypeError, OverflowError):
                            cache[t] = NAT_SECONDS
        return np.fromiter(map(cache.__getitem__, times), dtype=np.int64, count=len(times))

    def _parse_times(self, times: list[str], linenos: list[int]) -> np.ndarray:
        """Parse inferenceTime into self.times (datetime64[s]); returns the mask of good records."""
        sec = self._seconds(times)
        self.times = sec.view("datetime64[s]")
        keep = sec != NAT_SECONDS
        for i in np.flatnonzero(~keep).tolist():
            self.malformed.add("bad_inference_time", f"{self.name}:{linenos[i]}", times[i][:40])
        return keep

    # ---- the vectorised CSV path
    def _fast_csv(
        self,
        payloads: list[str],
        outputs: list[Any],
        recs: list[int],
        linenos: list[int],
        rows: _Rows,
        scores: _Scores,
        slow: list[tuple[int, tuple[Any, Any], str]],
    ) -> None:
        big = "\n".join(payloads)
        # Quotes, carriage returns and NULs need the careful path; pull those records out.
        if '"' in big or "\r" in big or "\x00" in big:
            keep_p, keep_o, keep_r = [], [], []
            for p, o, r in zip(payloads, outputs, recs, strict=True):
                if '"' in p or "\r" in p or "\x00" in p:
                    quoted = {"data": p, "encoding": "CSV", "observedContentType": "text/csv"}
                    slow.append((r, (quoted, o), f"{self.name}:{linenos[r]}"))
                else:
                    keep_p.append(p)
                    keep_o.append(o)
                    keep_r.append(r)
            payloads, outputs, recs = keep_p, keep_o, keep_r
            if not payloads:
                return
            big = "\n".join(payloads)
        blk = _CsvBlock.from_texts(big, payloads)
        rec_arr = np.asarray(recs, dtype=np.int64)
        self._csv_rows(blk, rec_arr, linenos, rows, scores)
        self._fast_scores(outputs, recs, linenos, scores)

    def _csv_rows(
        self,
        blk: _CsvBlock,
        rec_arr: np.ndarray,
        linenos: list[int],
        rows: _Rows,
        scores: _Scores,
    ) -> None:
        """Rows of a block of CSV requests (request p is record rec_arr[p])."""
        recs = rec_arr
        # Requests with no rows at all.
        n_rows_per = blk.rows_per_payload()
        scores.n_rows[rec_arr] = n_rows_per
        for ep in np.flatnonzero(n_rows_per == 0).tolist():
            self.malformed.add("empty_payload", f"{self.name}:{linenos[recs[ep]]}")
        F = self.n_features
        if self.arrow is not None and len(blk.row_starts) >= self.arrow.min_rows:
            # Arrow parses the block only if every row has F fields and every value reads
            # exactly as the numpy path would read it; otherwise (it declines) the numpy
            # path below does the block and its per-row accounting.
            arrow_cols = self.arrow.columns(blk)
            if arrow_cols is not None:
                rows.vec_cols.append(arrow_cols)
                rows.vec_rec.append(rec_arr[blk.row_payload])
                rows.vec_idx.append(blk.row_index)
                return
        # Rows with the wrong number of fields.
        good = blk.n_commas == F - 1
        for br in np.flatnonzero(~good).tolist():
            self.malformed.add(
                "wrong_column_count",
                f"{self.name}:{linenos[recs[int(blk.row_payload[br])]]}",
                f"{int(blk.n_commas[br]) + 1} fields, expected {F}",
            )
        starts, ends = blk.field_bounds(good, F)
        g_payload = blk.row_payload[good]
        g_index = blk.row_index[good]
        cols: dict[str, np.ndarray] = {}
        row_ok = np.ones(len(g_payload), dtype=bool)
        num_j = [j for j in range(F) if not self.cat_mask[j]]
        cat_j = [j for j in range(F) if self.cat_mask[j]]
        block = blk.numeric_block(starts, ends, num_j) if num_j else None
        cat_cols = dict(zip(cat_j, blk.categorical_block(starts, ends, cat_j), strict=True))
        for j, fname in enumerate(self.schema.features):
            s, e = starts[:, j], ends[:, j]
            if self.cat_mask[j]:
                cols[fname] = cat_cols[j]
            elif block is not None:
                cols[fname] = block[:, num_j.index(j)]
            else:
                cols[fname] = blk.numeric_counted(
                    s, e, row_ok, self.malformed, fname,
                    lambda r: f"{self.name}:{linenos[recs[g_payload[r]]]}",
                )  # fmt: skip
        if not row_ok.all():
            cols = {k: v[row_ok] for k, v in cols.items()}
            g_payload = g_payload[row_ok]
            g_index = g_index[row_ok]
        rows.vec_cols.append(cols)
        rows.vec_rec.append(rec_arr[g_payload])
        rows.vec_idx.append(g_index)

    def _fast_scores(
        self,
        outputs: list[Any],
        recs: list[int],
        linenos: list[int],
        scores: _Scores,
    ) -> None:
        texts: list[str] = []
        t_recs: list[int] = []
        try:
            # the common case: every record has a CSV output
            if outputs.count(None):
                raise TypeError
            texts = [o["data"] for o in outputs]
            if [o["encoding"] for o in outputs].count("CSV") != len(outputs):
                raise TypeError
            big = "\n".join(texts)
            t_recs = recs
        except (TypeError, KeyError):
            texts, t_recs = [], []
            for o, r in zip(outputs, recs, strict=True):
                if o is None:
                    continue
                if (
                    type(o) is dict
                    and o.get("encoding") == "CSV"
                    and type(d := o.get("data")) is str
                ):
                    texts.append(d)
                    t_recs.append(r)
                else:
                    self._slow_scores(r, o, f"{self.name}:{linenos[r]}", scores)
        big = "\n".join(texts)
        if '"' in big or "\r" in big or "\x00" in big:
            keep_t, keep_r = [], []
            for d, r in zip(texts, t_recs, strict=True):
                if '"' in d or "\r" in d or "\x00" in d:
                    quoted = {"data": d, "encoding": "CSV", "observedContentType": "text/csv"}
                    self._slow_scores(r, quoted, f"{self.name}:{linenos[r]}", scores)
                else:
                    keep_t.append(d)
                    keep_r.append(r)
            texts, t_recs = keep_t, keep_r
            big = "\n".join(texts)
        if not texts:
            return
        t_arr = np.asarray(t_recs, dtype=np.int64)
        self._csv_scores(_CsvBlock.from_texts(big, texts), t_arr, linenos, scores)

    def _csv_scores(
        self, blk: _CsvBlock, t_arr: np.ndarray, linenos: list[int], scores: _Scores
    ) -> None:
        """Scores of a block of CSV outputs (output p belongs to record t_arr[p])."""
        t_recs = t_arr
        expected = scores.n_rows[t_arr]
        got = blk.rows_per_payload()
        firsts_s, firsts_e = blk.first_field()
        block = blk.numeric_block(firsts_s[:, None], firsts_e[:, None], [0])
        if block is not None:
            vals, bad = block[:, 0], None
        else:
            vals, bad = blk.numeric(firsts_s, firsts_e)
        bad_payload = np.zeros(len(t_arr), dtype=bool)
        if bad is not None:
            bad_payload[blk.row_payload[bad]] = True
        # a request with no input rows was already counted as empty_payload
        mismatch = (got != expected) & ~bad_payload & (expected > 0)
        for p in np.flatnonzero(bad_payload).tolist():
            self.malformed.add(
                "bad_prediction", f"{self.name}:{linenos[t_recs[p]]}", blk.payload(p)[:40]
            )
        for p in np.flatnonzero(mismatch).tolist():
            self.malformed.add(
                "prediction_count_mismatch",
                f"{self.name}:{linenos[t_recs[p]]}",
                f"{int(got[p])} predictions for {int(expected[p])} rows",
            )
        ok_rows = ~(bad_payload | mismatch)[blk.row_payload]
        scores.add_vector(t_arr[blk.row_payload[ok_rows]], blk.row_index[ok_rows], vals[ok_rows])

    # ---- the careful per-record path
    def _slow_record(
        self, k: int, parts: tuple[dict[str, Any], Any], where: str, rows: _Rows, scores: _Scores
    ) -> None:
        inp, out = parts
        decoded = _decode_payload(inp, where, self.malformed)
        if decoded is None:
            return
        kind, text = decoded
        raw_rows: list[list[Any]] | None
        if kind == "json":
            try:
                raw_rows = _json_rows(orjson.loads(text), self.schema)
            except orjson.JSONDecodeError as exc:
                self.malformed.add("bad_json_payload", where, str(exc))
                return
            if raw_rows is None:
                self.malformed.add("bad_json_payload", where, "unrecognised JSON request shape")
                return
        else:
            raw_rows = _csv_split_rows(text)
        if not raw_rows:
            self.malformed.add("empty_payload", where)
            return
        scores.n_rows[k] = len(raw_rows)
        F = self.n_features
        for i, raw in enumerate(raw_rows):
            if len(raw) != F:
                self.malformed.add("wrong_column_count", where, f"{len(raw)} fields, expected {F}")
                continue
            values, detail = _convert_row(raw, self.schema, self.cat_mask)
            if values is None:
                self.malformed.add("unparseable_value", where, detail)
                continue
            rows.slow_values.append(values)
            rows.slow_rec.append(k)
            rows.slow_idx.append(i)
        if out is not None:
            self._slow_scores(k, out, where, scores)

    def _slow_scores(self, k: int, out: Any, where: str, scores: _Scores) -> None:
        """Predictions of one record; its input's row count is already in scores.n_rows."""
        if not isinstance(out, dict):
            self.malformed.add("bad_prediction", where, "endpointOutput is not an object")
            return
        quiet = MalformedLog()
        decoded = _decode_payload(out, where, quiet)
        if decoded is None:
            self.malformed.add("bad_prediction", where, ", ".join(quiet.by_reason))
            return
        kind, text = decoded
        vals: list[float] | None
        if kind == "json":
            try:
                vals = _json_scores(orjson.loads(text))
            except orjson.JSONDecodeError:
                vals = None
        else:
            vals = _csv_scores(text)
        if vals is None:
            self.malformed.add("bad_prediction", where, text[:40])
            return
        expected = int(scores.n_rows[k])
        if len(vals) != expected:
            self.malformed.add(
                "prediction_count_mismatch", where, f"{len(vals)} predictions for {expected} rows"
            )
            return
        scores.pending[k] = vals

    # ---- putting a chunk together in file order
    def _assemble(
        self,
        rows: _Rows,
        scores: _Scores,
        event_ids: list[str],
        inference_ids: list[Any],
    ) -> FeatureBatch | None:
        schema = self.schema
        parts_rec: list[np.ndarray] = list(rows.vec_rec)
        parts_idx: list[np.ndarray] = list(rows.vec_idx)
        col_parts: dict[str, list[np.ndarray]] = {
            f: [c[f] for c in rows.vec_cols] for f in schema.features
        }
        if rows.slow_values:
            parts_rec.append(np.asarray(rows.slow_rec, dtype=np.int64))
            parts_idx.append(np.asarray(rows.slow_idx, dtype=np.int64))
            for j, f in enumerate(schema.features):
                vals = [r[j] for r in rows.slow_values]
                if self.cat_mask[j]:
                    arr = np.empty(len(vals), dtype=object)
                    arr[:] = vals
                else:
                    arr = np.asarray(vals, dtype=np.float64)
                col_parts[f].append(arr)
        if not parts_rec:
            return None
        rec = np.concatenate(parts_rec) if len(parts_rec) > 1 else parts_rec[0]
        idx = np.concatenate(parts_idx) if len(parts_idx) > 1 else parts_idx[0]
        columns = {f: (np.concatenate(p) if len(p) > 1 else p[0]) for f, p in col_parts.items()}
        # a single part may be a read-only view of arrow's buffers: batches own their arrays
        columns = {f: (c if c.flags.writeable else c.copy()) for f, c in columns.items()}
        order: np.ndarray | None = None
        if len(rec) > 1:
            # Parts from the byte-level and vectorised paths usually arrive in file order
            # already; sort (record, row) only when they do not.
            d_rec = np.diff(rec)
            if not ((d_rec > 0) | ((d_rec == 0) & (np.diff(idx) > 0))).all():
                order = np.lexsort((idx, rec))
        if order is not None:
            rec, idx = rec[order], idx[order]
            columns = {f: c[order] for f, c in columns.items()}
        n = len(rec)
        if n == 0:
            return None
        # Row identity: E for a one-row request, E:i for row i of a multi-row request.
        multi = scores.n_rows[rec] > 1
        if multi.any():
            ids = [
                f"{event_ids[r]}:{i}" if m else event_ids[r]
                for r, i, m in zip(rec.tolist(), idx.tolist(), multi.tolist(), strict=True)
            ]
            inf_ids = [inference_ids[r] for r in rec.tolist()]
        elif order is None and n == len(event_ids):
            # one row per request, in file order: the per-record lists are the per-row lists
            ids, inf_ids = event_ids, inference_ids
        else:
            rl = rec.tolist()
            ids = [event_ids[r] for r in rl]
            inf_ids = [inference_ids[r] for r in rl]
        return FeatureBatch(
            columns=columns,
            n_rows=n,
            predictions=scores.lookup(rec, idx),
            event_ids=ids,
            inference_ids=inf_ids,
            inference_times=self.times[rec],
        )


class _Scores:
    """Predictions per (record, row), filled by both paths and looked up at assembly."""

    def __init__(self, n_rec: int) -> None:
        self.n_rec = n_rec
        self.vec_rec: list[np.ndarray] = []
        self.vec_idx: list[np.ndarray] = []
        self.vec_val: list[np.ndarray] = []
        self.pending: dict[int, list[float]] = {}
        # non-blank input rows of each request (before bad rows are dropped)
        self.n_rows = np.zeros(n_rec, dtype=np.int64)

    def add_vector(self, rec: np.ndarray, idx: np.ndarray, val: np.ndarray) -> None:
        self.vec_rec.append(rec)
        self.vec_idx.append(idx)
        self.vec_val.append(val)

    def lookup(self, rec: np.ndarray, idx: np.ndarray) -> np.ndarray:
        pred = np.full(len(rec), np.nan)
        if not self.vec_rec and not self.pending:
            return pred
        # Key each (record, row) pair as one int64 and match with a sorted search.
        shift = np.int64(1 << 32)
        keys = rec * shift + idx
        src_keys: list[np.ndarray] = []
        src_vals: list[np.ndarray] = []
        if self.vec_rec:
            src_keys.append(np.concatenate(self.vec_rec) * shift + np.concatenate(self.vec_idx))
            src_vals.append(np.concatenate(self.vec_val))
        if self.pending:
            pk = [k * (1 << 32) + i for k, vals in self.pending.items() for i in range(len(vals))]
            pv = [v for vals in self.pending.values() for v in vals]
            src_keys.append(np.asarray(pk, dtype=np.int64))
            src_vals.append(np.asarray(pv, dtype=np.float64))
        sk = np.concatenate(src_keys)
        sv = np.concatenate(src_vals)
        if len(sk) == 0:
            return pred
        srt = np.argsort(sk, kind="stable")
        sk, sv = sk[srt], sv[srt]
        pos = np.searchsorted(sk, keys)
        pos_c = np.minimum(pos, len(sk) - 1)
        hit = (pos < len(sk)) & (sk[pos_c] == keys)
        pred[hit] = sv[pos_c[hit]]
        return pred


def _positions(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., n-1 for each n in counts, laid end to end (a row's index in its request)."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def _starts_from_lengths(lens: np.ndarray) -> np.ndarray:
    """Byte offsets of items of these lengths laid end to end with one separator byte."""
    starts = np.zeros(len(lens), dtype=np.int64)
    if len(lens) > 1:
        np.cumsum(lens[:-1] + 1, out=starts[1:])
    return starts


class _CsvBlock:
    """Many CSV payloads joined by newlines, tokenised at once with numpy.

    Rows are the non-empty lines; each row remembers which payload (request) it came
    from and its index within that request. Field boundaries come from the positions of
    commas, so no Python string is made per value.
    """

    def __init__(self, raw: bytes, p_starts: np.ndarray) -> None:
        """`raw` holds the payloads separated by newlines; `p_starts` their byte offsets."""
        self.raw = raw
        self.joined = True  # raw is exactly the payloads joined by newlines
        buf = np.frombuffer(raw, dtype=np.uint8)
        self.buf = buf
        n = len(buf)
        self.p_starts = p_starts
        self.p_ends = np.append(p_starts[1:] - 1, n) if len(p_starts) else p_starts
        self.n_payloads = len(p_starts)
        nl = np.flatnonzero(buf == 10)
        r_starts = np.concatenate(([0], nl + 1))
        r_ends = np.concatenate((nl, [n]))
        nonempty = r_ends > r_starts
        # payload of every line, and the line's index among its payload's lines
        line_payload = np.searchsorted(p_starts, r_starts, side="right") - 1
        self.row_starts = r_starts[nonempty]
        self.row_ends = r_ends[nonempty]
        self.row_payload = line_payload[nonempty]
        first_row = np.searchsorted(self.row_payload, np.arange(self.n_payloads), side="left")
        self.row_index = (
            np.arange(len(self.row_starts), dtype=np.int64) - first_row[self.row_payload]
        )
        # comma_pos, commas_before and n_commas are computed on first use (see below):
        # the arrow engine never needs them for a block it parses.

    @cached_property
    def comma_pos(self) -> np.ndarray:
        """Byte positions of every comma in buf."""
        return np.flatnonzero(self.buf == 44)

    @cached_property
    def commas_before(self) -> np.ndarray:
        """Commas before each row's start (the index of its first comma in comma_pos)."""
        return np.searchsorted(self.comma_pos, self.row_starts)

    @cached_property
    def n_commas(self) -> np.ndarray:
        """Commas in each row: its field count minus one (no quotes on this path)."""
        return np.searchsorted(self.comma_pos, self.row_ends) - self.commas_before

    @classmethod
    def from_spans(
        cls, raw: bytes, buf: np.ndarray, commas: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> _CsvBlock:
        """A block over payloads that are ranges of a larger buffer, one row each at most.

        Used by the exact-layout path: the payloads stay where they are in the capture
        lines (they hold no newline there), so nothing is copied. `commas` are all comma
        positions in buf; those outside the ranges never fall inside a row.
        """
        blk = cls.__new__(cls)
        blk.raw = raw
        blk.joined = False
        blk.buf = buf
        blk.p_starts = starts
        blk.p_ends = ends
        blk.n_payloads = len(starts)
        nonempty = ends > starts
        blk.row_starts = starts[nonempty]
        blk.row_ends = ends[nonempty]
        blk.row_payload = np.flatnonzero(nonempty)
        blk.row_index = np.zeros(len(blk.row_starts), dtype=np.int64)
        blk.comma_pos = commas
        blk.commas_before = np.searchsorted(commas, blk.row_starts)
        blk.n_commas = np.searchsorted(commas, blk.row_ends) - blk.commas_before
        return blk

    @classmethod
    def from_cut(cls, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> _CsvBlock:
        """A block of the ranges [starts, ends) of buf, which hold no newline, copied out."""
        raw = _cut(buf, starts, ends)[:-1].tobytes() if len(starts) else b""
        return cls(raw, _starts_from_lengths(ends - starts))

    @classmethod
    def from_texts(cls, big: str, payloads: list[str]) -> _CsvBlock:
        """A block from payload strings and their newline-joined text."""
        if big.isascii():
            raw = big.encode("ascii")
            lens = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        else:
            raw = big.encode("utf-8", "surrogatepass")
            lens = np.fromiter(
                (len(p.encode("utf-8", "surrogatepass")) for p in payloads),
                dtype=np.int64,
                count=len(payloads),
            )
        return cls(raw, _starts_from_lengths(lens))

    def payload(self, p: int) -> str:
        """The text of payload p (for messages)."""
        return self.raw[int(self.p_starts[p]) : int(self.p_ends[p])].decode("utf-8", "replace")

    def rows_per_payload(self) -> np.ndarray:
        return np.bincount(self.row_payload, minlength=self.n_payloads).astype(np.int64)

    def field_bounds(self, good: np.ndarray, n_fields: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends), each (n_good_rows, n_fields), for rows with n_fields fields."""
        rs = self.row_starts[good]
        re_ = self.row_ends[good]
        if n_fields == 1:
            return rs[:, None], re_[:, None]
        c = self.comma_pos[self.commas_before[good][:, None] + np.arange(n_fields - 1)]
        starts = np.concatenate((rs[:, None], c + 1), axis=1)
        ends = np.concatenate((c, re_[:, None]), axis=1)
        return starts, ends

    def first_field(self) -> tuple[np.ndarray, np.ndarray]:
        has = self.n_commas > 0
        ends = self.row_ends.copy()
        if has.any():
            ends[has] = self.comma_pos[self.commas_before[has]]
        return self.row_starts, ends

    def token(self, s: int, e: int) -> str:
        return self.raw[s:e].decode("utf-8", "replace")

    def _matrix(self, s: np.ndarray, e: np.ndarray, width: int) -> np.ndarray:
        """Tokens (all at most `width` bytes) as a fixed-width bytes array ('S{width}')."""
        cols = np.arange(width)
        idx = s[:, None] + cols
        np.minimum(idx, len(self.buf) - 1, out=idx)
        mat = self.buf[idx]
        mat[cols >= (e - s)[:, None]] = 0
        return mat.view(f"S{width}").reshape(len(s))

    @staticmethod
    def _runs(
        starts: np.ndarray, ends: np.ndarray, cols: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the ranges covering runs of adjacent columns (ascending `cols`)."""
        runs: list[tuple[int, int]] = []
        for j in cols:
            if runs and runs[-1][1] == j - 1:
                runs[-1] = (runs[-1][0], j)
            else:
                runs.append((j, j))
        return starts[:, [a for a, _ in runs]], ends[:, [b for _, b in runs]]

    def categorical_block(
        self, starts: np.ndarray, ends: np.ndarray, cols: list[int]
    ) -> list[np.ndarray]:
        """Object arrays of str (None for empty) for columns `cols` (ascending), one pass.

        The values are cut out together, decoded once and split on the commas between
        them (a payload on this path holds no quote, so no value holds a comma).
        """
        n = len(starts)
        k = len(cols)
        if k == 0:
            return []
        if n == 0:
            return [np.empty(0, dtype=object) for _ in cols]
        s, e = self._runs(starts, ends, cols)
        text = _compress(self.buf, s, e, 44)[:-1].tobytes().decode("utf-8", "replace")
        values = text.split(",")
        if len(values) != n * k:  # pragma: no cover - cut and split agree by construction
            raise AssertionError("categorical tokens do not line up")
        flat = np.empty(n * k, dtype=object)
        flat[:] = values
        flat[flat == ""] = None
        grid = flat.reshape(n, k)
        return [grid[:, i].copy() for i in range(k)]

    def numeric_block(
        self, starts: np.ndarray, ends: np.ndarray, cols: list[int]
    ) -> np.ndarray | None:
        """Values of columns `cols` (ascending) of the (rows, fields) tokens, or None.

        The tokens are cut out of the buffer with a byte mask (adjacent columns as one
        range, commas included) and handed to orjson as one JSON array: a C-speed,
        correctly rounded parse of every value at once. It only works when every token
        is a JSON number (no empty value, nan, inf, leading "+" or "."), so None sends
        the caller to the token-by-token path.
        """
        s, e = self._runs(starts, ends, cols)
        text = _compress(self.buf, s, e, 44)[:-1].tobytes()
        if text.translate(None, _JSON_NUMBER_CHARS):
            return None  # a byte that cannot be part of a JSON number
        try:
            values = orjson.loads(b"[" + text + b"]")
        except orjson.JSONDecodeError:
            return None
        if len(values) != len(starts) * len(cols):
            return None
        return np.fromiter(values, dtype=np.float64, count=len(values)).reshape(
            len(starts), len(cols)
        )

    def numeric_counted(
        self,
        s: np.ndarray,
        e: np.ndarray,
        row_ok: np.ndarray,
        malformed: MalformedLog,
        fname: str,
        where: Callable[[int], str],
    ) -> np.ndarray:
        """`numeric`, with each unparseable value counted at `where(row)` and its row
        cleared in `row_ok` (in place), so the row is dropped rather than kept half-read."""
        vals, bad = self.numeric(s, e)
        if bad is not None:
            for r in np.flatnonzero(bad & row_ok).tolist():
                tok = self.token(int(s[r]), int(e[r]))
                malformed.add("unparseable_value", where(r), f"{fname}={tok[:40]!r}")
            row_ok &= ~bad
        return vals

    def numeric(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """float64 values and the mask of unparseable tokens (None when all parsed).

        Plain decimals (`-12.345`, up to 15 digits) are parsed here for all tokens at
        once, one character position per step: the digits accumulate into an exact
        integer mantissa, and mantissa / 10**fraction_digits is the correctly rounded
        double (both operands are exact, and IEEE division rounds correctly), i.e. the
        same value float() gives. Anything else (exponents, nan, inf, spaces, junk)
        goes through float() token by token. An empty token is a missing value (NaN).
        """
        n = len(s)
        if n == 0:
            return np.zeros(0), None
        w = e - s
        width = int(w.max())
        buf = self.buf
        last = len(buf) - 1
        mant = np.zeros(n, dtype=np.int64)
        frac = np.zeros(n, dtype=np.int64)
        ndig = np.zeros(n, dtype=np.int64)
        seen_dot = np.zeros(n, dtype=bool)
        odd = w > min(width, _MAX_VECTOR_WIDTH)  # over-long tokens: the careful path
        first = buf[np.minimum(s, last)]
        neg = first == 45
        signed = neg | (first == 43)
        for k in range(min(width, _MAX_VECTOR_WIDTH)):
            active = w > k
            c = buf[np.minimum(s + k, last)]
            d = c - np.uint8(48)
            is_digit = (d < 10) & active
            np.multiply(mant, 10, out=mant, where=is_digit)
            np.add(mant, d, out=mant, where=is_digit)
            ndig += is_digit
            frac += is_digit & seen_dot
            is_dot = (c == 46) & active
            odd |= is_dot & seen_dot
            seen_dot |= is_dot
            other = active & ~is_digit & ~is_dot
            if k == 0:
                other &= ~signed
            odd |= other
        empty = w == 0
        odd |= ~empty & ((ndig == 0) | (ndig > 15))
        vals = mant / np.power(10.0, frac)
        np.negative(vals, out=vals, where=neg)
        vals[empty] = np.nan
        if not odd.any():
            return vals, None
        bad = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(odd).tolist():
            f = _parse_number(self.token(int(s[i]), int(e[i])))
            if f is None:
                bad[i] = True
                vals[i] = np.nan
            else:
                vals[i] = f
        return vals, (bad if bad.any() else None)

    def categorical(self, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Object array of str (None for empty), decoding each distinct value once.

        Tokens of up to 8 bytes are packed exactly into one uint64 each (no NUL byte
        reaches this path), so finding the distinct values is an integer unique; longer
        tokens are compared as fixed-width bytes.
        """
        n = len(s)
        out = np.empty(n, dtype=object)
        if n == 0:
            return out
        w = e - s
        width = int(w.max())
        if width <= 8:
            key = np.zeros(n, dtype=np.uint64)
            last = len(self.buf) - 1
            for k in range(width):
                c = self.buf[np.minimum(s + k, last)].astype(np.uint64)
                c[w <= k] = 0
                key |= c << np.uint64(8 * k)
            uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            names = [
                self.raw[s[i] : e[i]].decode("utf-8", "replace") or None for i in first.tolist()
            ]
        else:
            wide = w > _MAX_VECTOR_WIDTH
            mat = self._matrix(s, e, min(width, _MAX_VECTOR_WIDTH))
            uniq, inverse = np.unique(mat, return_inverse=True)
            names = [u.decode("utf-8", "replace") or None for u in uniq.tolist()]
        decoded = np.empty(len(uniq), dtype=object)
        decoded[:] = names
        out[:] = decoded[inverse.reshape(-1)]
        if width > 8:
            for i in np.flatnonzero(wide).tolist():
                out[i] = self.token(int(s[i]), int(e[i]))
        return out


# --------------------------------------------------------------------------- the reader


_UTF8_BOM = b"\xef\xbb\xbf"


class _ArrowCsv:
    """Blocks of CSV payload rows parsed by pyarrow's CSV reader (one thread).

    A block's result is used only if arrow reads every row and value: a row with the
    wrong field count, or a numeric value arrow rejects (spaces other than blanks and
    tabs, "1_000", unicode digits, ...) sends the whole block back to the numpy path,
    so what is kept, dropped and counted never depends on the engine. Where arrow is
    more lenient than float() ("nan(...)") or differs from the numpy path (a leading
    byte-order mark, which arrow skips), the block is declined up front. Empty fields
    are missing values in both engines; "nan" is a float NaN in numeric columns and the
    string "nan" in categorical ones, as in the numpy path.
    """

    # Smaller blocks go to the numpy path: arrow's fixed cost per call (~0.1 ms) would
    # outweigh its speed (e.g. a reader asked for chunks of a few rows).
    min_rows = 256

    def __init__(self, schema: Schema, *, lazy: bool = False) -> None:
        """pyarrow is imported now (ImportError if it cannot be), or if lazy, on first
        use (about 0.2 s saved when the compiled scanner reads everything); a lazy
        parser that cannot import it declines every block."""
        self.names = [f"c{j}" for j in range(len(schema.features))]
        self.features = list(schema.features)
        self.categorical = [schema.is_categorical(f) for f in schema.features]
        self.ready = False
        self.broken = False
        if not lazy:
            self._setup()

    def _setup(self) -> None:
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        self.pa = pa
        types = {
            n: (pa.dictionary(pa.int32(), pa.string()) if cat else pa.float64())
            for n, cat in zip(self.names, self.categorical, strict=True)
        }
        self.read_csv = pa_csv.read_csv
        self.read_options = pa_csv.ReadOptions
        self.parse_options = pa_csv.ParseOptions(
            delimiter=",",
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
        )
        self.convert_options = pa_csv.ConvertOptions(
            column_types=types,
            null_values=[""],
            true_values=[],
            false_values=[],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=True,
        )
        self.ready = True

    def columns(self, blk: _CsvBlock) -> dict[str, np.ndarray] | None:
        """Columns of every row of blk in row order, or None to use the numpy path."""
        if not self.ready:
            if self.broken:
                return None
            try:
                self._setup()
            except ImportError:
                self.broken = True
                return None
        n_rows = len(blk.row_starts)
        if blk.joined:
            data = blk.raw  # the payloads joined by newlines; rows are its non-empty lines
        else:
            data = _cut(blk.buf, blk.row_starts, blk.row_ends).tobytes()
        if data.startswith(_UTF8_BOM) or b"(" in data:
            return None
        pa = self.pa
        try:
            table = self.read_csv(
                pa.py_buffer(data),
                read_options=self.read_options(
                    use_threads=False,
                    column_names=self.names,
                    block_size=max(len(data) + 1, 1 << 16),
                ),
                parse_options=self.parse_options,
                convert_options=self.convert_options,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            return None
        if table.num_rows != n_rows:
            return None
        out: dict[str, np.ndarray] = {}
        for j, fname in enumerate(self.features):
            col = table.column(j)
            if self.categorical[j]:
                out[fname] = self._strings(col, n_rows)
            else:
                parts = []
                for chunk in col.chunks:
                    values, valid = _arrow_values(chunk, np.float64)
                    if valid is not None:
                        values = np.where(valid, values, np.nan)
                    parts.append(values)  # read-only when a view; _assemble copies those
                out[fname] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out

    def _strings(self, col: Any, n_rows: int) -> np.ndarray:
        """Object array of str (None for missing) from a dictionary-encoded column."""
        out = np.empty(n_rows, dtype=object)
        at = 0
        for chunk in col.chunks:  # each chunk has its own dictionary
            words = chunk.dictionary.to_pylist()
            lookup = np.empty(len(words) + 1, dtype=object)
            lookup[: len(words)] = words
            lookup[len(words)] = None
            idx, valid = _arrow_values(chunk.indices, np.int32)
            if valid is not None:
                idx = np.where(valid, idx, len(words))
            out[at : at + len(chunk)] = lookup[idx]
            at += len(chunk)
        return out


def _arrow_values(arr: Any, dtype: type[np.generic]) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, validity mask or None) of a primitive arrow array, read from its buffers.

    Array.to_numpy would import pyarrow.compute (slow to import) to fill the nulls.
    The values under a null are arbitrary; callers replace them.
    """
    n = len(arr)
    validity, data = arr.buffers()[:2]
    values = np.frombuffer(data, dtype=dtype, count=n, offset=arr.offset * np.dtype(dtype).itemsize)
    if not arr.null_count or validity is None:
        return values, None
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return values, bits[arr.offset : arr.offset + n].astype(bool)


class _LineOrderedLog(MalformedLog):
    """Holds a parse's malformed entries, then hands them on sorted by line.

    The Python paths count in stages (layout, then times, then values), so without this
    the order of the examples would depend on how many lines one parse call covers.
    Sorting is stable: entries of one line keep their stage order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[int, str, str, str, int]] = []

    def add(self, reason: str, where: str, detail: str = "", count: int = 1) -> None:
        line = where.rpartition(":")[2]
        self.entries.append((int(line) if line.isdigit() else 0, reason, where, detail, count))

    def flush_to(self, log: MalformedLog) -> None:
        for _, reason, where, detail, count in sorted(self.entries, key=lambda e: e[0]):
            log.add(reason, where, detail, count)
        self.entries = []


class _NativeOut:
    """The arrays one chunk's natively scanned pieces are written into, column-major."""

    def __init__(
        self, capacity: int, features: list[str], num_features: list[str], cat_features: list[str]
    ) -> None:
        n_num, n_cat = len(num_features), len(cat_features)
        self.capacity = capacity  # rows
        self.num = np.empty((n_num, capacity), dtype=np.float64)
        self.codes = np.empty((n_cat, capacity), dtype=np.int32)
        self.cats = np.empty((n_cat, capacity), dtype=object)
        self.pred = np.empty(capacity, dtype=np.float64)
        self.time_codes = np.empty(capacity, dtype=np.int32)
        self.seconds = np.empty(capacity, dtype=np.int64)
        self.event_ids: list[str] = []
        self.inference_ids: list[str | None] = []
        self.rows = 0
        # each feature's column (a row of num or cats), in the schema's order
        cols = {f: self.num[j] for j, f in enumerate(num_features)}
        cols.update({f: self.cats[k] for k, f in enumerate(cat_features)})
        self.columns = {f: cols[f] for f in features}
        self.cat_features = cat_features
        # each categorical column's names in the order first seen in the chunk; the
        # scanner numbers them per piece, and `recode` renumbers them chunk-wide
        self.index: list[dict[str, int]] = [{} for _ in range(n_cat)]
        self.names: list[list[str]] = [[] for _ in range(n_cat)]

    def recode(self, k: int, words: list[str], a: int, b: int) -> None:
        """Rows a..b of categorical column k: piece codes (into words) to chunk codes."""
        index, names = self.index[k], self.names[k]
        remap = np.empty(len(words) + 1, dtype=np.int32)
        for i, w in enumerate(words):
            code = index.get(w)
            if code is None:
                code = index[w] = len(names)
                names.append(w)
            remap[i] = code
        remap[-1] = -1  # an empty value (code -1) stays missing
        lookup = np.empty(len(words) + 1, dtype=object)
        lookup[:-1] = words  # and is the None at the end
        codes = self.codes[k, a:b]
        np.take(lookup, codes, out=self.cats[k, a:b])
        codes[:] = remap[codes]

    def batch(self, a: int, b: int) -> FeatureBatch:
        return FeatureBatch(
            columns={f: c[a:b] for f, c in self.columns.items()},
            n_rows=b - a,
            predictions=self.pred[a:b],
            event_ids=self.event_ids[a:b],
            inference_ids=self.inference_ids[a:b],
            inference_times=self.seconds[a:b].view("datetime64[s]"),
            codes={
                f: (self.codes[k, a:b], list(self.names[k]))
                for k, f in enumerate(self.cat_features)
            },
        )


class _NativeScan:
    """Pieces read by the compiled scanner, driftloop._scan (see driftloop/_scan.c).

    It accepts a piece only if every line is in SageMaker's exact layout with CSV or
    JSON rows (one or more per request, as many predictions) and values it reads exactly
    as the Python paths do (plain decimal numbers, printable ASCII); otherwise it
    declines and the Python paths read the piece, and count whatever is malformed in it.
    """

    def __init__(self, schema: Schema) -> None:
        self.features = list(schema.features)
        self.kinds = bytes(1 if schema.is_categorical(f) else 0 for f in self.features)
        self.num_features = [f for f in self.features if not schema.is_categorical(f)]
        self.cat_features = [f for f in self.features if schema.is_categorical(f)]

    def start(self, capacity: int) -> _NativeOut:
        """The arrays for a chunk of at most `capacity` rows."""
        return _NativeOut(capacity, self.features, self.num_features, self.cat_features)

    def scan(
        self,
        piece: bytes | memoryview,
        n: int,
        out: _NativeOut,
        seconds: Callable[[list[str]], np.ndarray],
    ) -> bool:
        """Read the rows of the n lines of piece into out's next rows; False (nothing
        kept) if declined."""
        a = out.rows
        got = _scan.scan(
            piece, n, self.kinds, out.num, out.codes, out.pred, out.time_codes, out.capacity, a
        )
        if got is None:
            return False
        names, event_ids, inference_ids, times = got
        sec = seconds(times)
        if (sec == NAT_SECONDS).any():
            return False  # the Python paths count the bad times
        b = a + len(event_ids)
        out.seconds[a:b] = sec[out.time_codes[a:b]]
        for k, words in enumerate(names):
            out.recode(k, words, a, b)
        out.event_ids += event_ids
        out.inference_ids += inference_ids if inference_ids is not None else [None] * (b - a)
        out.rows = b
        return True


def _engines(engine: str, schema: Schema) -> tuple[_ArrowCsv | None, _NativeScan | None]:
    """The arrow payload parser and the compiled scanner `engine` asks for (None: not used).

    "numpy" uses neither (the reference path), "arrow" pyarrow for CSV blocks, "native"
    the compiled scanner for exact-layout pieces, "auto" each of the two that is there.
    """
    if engine not in ("auto", "numpy", "arrow", "native"):
        raise DriftloopError(f"engine must be auto, numpy, arrow or native, not {engine!r}")
    if not schema.features:
        return None, None
    native: _NativeScan | None = None
    if engine in ("auto", "native"):
        if _scan is not None:
            native = _NativeScan(schema)
        elif engine == "native":
            raise DriftloopError(
                "engine='native' needs driftloop's compiled scanner, which was not built "
                "(reinstall with a C compiler: pip install -e .)"
            )
    arrow = None
    if engine == "arrow":
        try:
            arrow = _ArrowCsv(schema)
        except ImportError as exc:
            raise DriftloopError(f"engine='arrow' needs pyarrow ({exc})") from exc
    elif engine == "auto":
        try:
            found = importlib.util.find_spec("pyarrow") is not None
        except (ImportError, ValueError):  # e.g. sys.modules["pyarrow"] is None
            found = False
        arrow = _ArrowCsv(schema, lazy=True) if found else None
    return arrow, native


def _numpy_newlines(block: bytes | memoryview) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)


def _native_newlines(block: bytes | memoryview) -> np.ndarray:
    """Where the newlines of block are (the compiled scanner's memchr loop)."""
    return np.frombuffer(_scan.newlines(block), dtype=np.int64)


def _iter_line_chunks(
    fh: IO[bytes] | _MappedFile,
    n: int,
    piece_lines: int = _EXTRACT_LINES,
    find_newlines: Callable[[bytes | memoryview], np.ndarray] = _numpy_newlines,
) -> Iterator[list[_Piece]]:
    """Chunks of up to n whole lines, as pieces of up to piece_lines lines each.

    A piece is (bytes, positions of its newlines); every line in it ends with a newline
    (one is added to a last line without it). Blocks come from fh.read() and their
    newlines are found with numpy; a piece is a view of its block, or joined from views
    of the blocks it spans, so each byte is copied at most once. This beats iterating
    a file by line, hands the byte-level path its lines in one buffer, and works for
    any object with read(), e.g. an S3 StreamingBody, whose iterator yields 1 KB chunks
    rather than lines.
    """
    pieces: list[_Piece] = []
    in_chunk = 0  # lines in the finished pieces of the current chunk
    parts: list[memoryview | bytes] = []  # the current piece, still in views
    part_nls: list[np.ndarray] = []
    count = 0  # lines in the current piece
    size = 0  # bytes in the current piece

    def finish_piece() -> None:
        nonlocal parts, part_nls, count, size, in_chunk
        # a piece inside one block stays a view of it (the compiled scanner reads views;
        # the Python paths copy what they get to bytes)
        blob = parts[0] if len(parts) == 1 else b"".join(parts)
        nl = part_nls[0] if len(part_nls) == 1 else np.concatenate(part_nls)
        pieces.append((blob, nl))
        in_chunk += count
        parts, part_nls, count, size = [], [], 0, 0

    def add(data: memoryview | bytes, nl: np.ndarray) -> Iterator[list[_Piece]]:
        """Queue data (newlines at nl); yield each chunk as it reaches n lines."""
        nonlocal pieces, in_chunk, count, size
        start = 0
        done = 0
        while True:
            need = min(piece_lines, n - in_chunk) - count
            if len(nl) - done < need:
                if start < len(data):
                    parts.append(data[start:])
                    part_nls.append(nl[done:] - start + size)
                    size += len(data) - start
                    count += len(nl) - done
                return
            end = int(nl[done + need - 1]) + 1
            parts.append(data[start:end])
            part_nls.append(nl[done : done + need] - start + size)
            size += end - start
            count += need
            finish_piece()
            if in_chunk == n:
                yield pieces
                pieces, in_chunk = [], 0
            start = end
            done += need

    tail = False  # the queued bytes end in a partial line
    while True:
        block = fh.read(_READ_BLOCK)
        if not block:
            break
        nl = find_newlines(block)
        tail = block[-1:] != b"\n"
        yield from add(memoryview(block), nl)
    if tail:
        yield from add(b"\n", np.zeros(1, dtype=np.int64))
    if count:
        finish_piece()
    if pieces:
        yield pieces


def _split_batch(batch: FeatureBatch, size: int) -> Iterable[FeatureBatch]:
    if batch.n_rows <= size:
        yield batch
        return
    for a in range(0, batch.n_rows, size):
        yield batch.rows(a, a + size)


def read_capture(
    source: str | Path | IO[bytes],
    *,
    schema: Schema,
    chunk_rows: int = 65536,
    malformed: MalformedLog,
    name: str | None = None,
    engine: str = "auto",
) -> Iterator[FeatureBatch]:
    """Stream a capture file as FeatureBatch chunks of at most `chunk_rows` rows.

    `source` is a path or a binary file object. Bad lines and rows are counted in
    `malformed` (reasons in this module's docstring) and skipped; this never raises on
    bad content. A missing file is a DriftloopError.

    `engine` picks the accelerators: "numpy" (numpy and orjson only), "arrow"
    (pyarrow's CSV reader for blocks of well-formed rows), "native" (the compiled
    scanner for pieces of exact-layout lines), each with numpy for the rest and a
    DriftloopError if its part is missing, or "auto" (whichever of the two is there).
    All give the same batches and the same malformed counts.
    """
    if chunk_rows < 1:
        raise DriftloopError(f"chunk_rows must be at least 1, not {chunk_rows}")
    engines = _engines(engine, schema)
    if isinstance(source, str | Path):
        path = Path(source)
        label = name or str(path)
        try:
            fh: IO[bytes] = path.open("rb", buffering=0)
        except OSError as exc:
            raise DriftloopError(f"{path}: cannot open capture file ({exc.strerror})") from exc
        with fh:
            mapped = _MappedFile.open(fh)
            if mapped is None:
                yield from _read_stream(fh, schema, chunk_rows, malformed, label, *engines)
                return
        with mapped:
            yield from _read_stream(mapped, schema, chunk_rows, malformed, label, *engines)
    else:
        label = name or str(getattr(source, "name", "<stream>"))
        yield from _read_stream(source, schema, chunk_rows, malformed, label, *engines)


class _MappedFile:
    """A file read through mmap: read() returns views of the mapping, so no byte is copied.

    Pages already read are let go (madvise DONTNEED) as reading moves on, so the process
    never holds more than a few blocks of the file resident; a view of such a page stays
    valid (the kernel reads it back from the page cache if touched again).
    """

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm
        self.view = memoryview(mm)
        self.pos = 0
        self.released = 0  # bytes before this offset were let go

    @classmethod
    def open(cls, fh: IO[bytes]) -> _MappedFile | None:
        """The file mapped, or None where it cannot be (empty, a pipe, no mmap)."""
        try:
            if os.fstat(fh.fileno()).st_size == 0:
                return None
            return cls(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
        except (OSError, ValueError, io.UnsupportedOperation):
            return None

    def read(self, n: int) -> memoryview:
        keep_from = (max(0, self.pos - 4 * n) // mmap.PAGESIZE) * mmap.PAGESIZE
        if keep_from > self.released and hasattr(self.mm, "madvise"):
            self.mm.madvise(mmap.MADV_DONTNEED, self.released, keep_from - self.released)
            self.released = keep_from
        block = self.view[self.pos : self.pos + n]
        self.pos += len(block)
        return block

    def __enter__(self) -> _MappedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        # Views of it may live on (a caller that stopped reading early); the mapping
        # then goes when the last of them does.
        with contextlib.suppress(BufferError):
            self.view.release()
            self.mm.close()


def _read_stream(
    fh: IO[bytes] | _MappedFile,
    schema: Schema,
    chunk_rows: int,
    malformed: MalformedLog,
    name: str,
    arrow: _ArrowCsv | None,
    native: _NativeScan | None,
) -> Iterator[FeatureBatch]:
    parser = _ChunkParser(schema, malformed, name, arrow, native)
    lineno = 1
    find_newlines = _numpy_newlines if native is None else _native_newlines
    for pieces in _iter_line_chunks(fh, chunk_rows, find_newlines=find_newlines):
        batch = parser.parse(pieces, lineno)
        lineno += sum(len(nl) for _, nl in pieces)
        if batch is not None:
            yield from _split_batch(batch, chunk_rows)
