"""Serving hooks for the SageMaker scikit-learn container (and driftloop's local endpoint).

The container imports this module (SAGEMAKER_PROGRAM=inference.py) and calls, per request:

    model = model_fn(model_dir)                   # once: the extracted model.tar.gz
    data = input_fn(body, content_type)           # text/csv or application/json -> rows
    prediction = predict_fn(data, model)          # rows -> P(default) and 0/1 labels
    body, content_type = output_fn(prediction, accept)

Requests carry one or many rows. CSV has no header; columns are in the schema's order
(schema.json in the model dir). JSON is {"instances": [[...], ...]}, a list of rows, a
list of objects keyed by feature name, one row, or one object. The answer is CSV
(`score,label` per line) or JSON ({"predictions": [{"score": s, "label": l}, ...]}).

Bad payloads raise `InvalidInput` (a ValueError) with a message naming the row and the
column; the local endpoint answers 400 with it. The real container answers an uncaught
exception with HTTP 500 (InvokeEndpoint raises ModelError), see docs/training.md.

Imports only numpy, pandas, joblib (and scikit-learn through the pickle), so it runs in
the stock image without driftloop installed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
JSON_TYPES = frozenset({"application/json"})
ANY = "*/*"
# What the container answers for Accept */* or no Accept (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT).
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
MISSING_TEXT = frozenset({"", "nan", "NaN", "null", "None"})


class InvalidInput(ValueError):
    """The payload cannot be read as rows of this model's features (HTTP 400 locally)."""


class UnsupportedContentType(InvalidInput):
    """The request's Content-Type is neither CSV nor JSON (HTTP 415 locally)."""


class UnsupportedAccept(InvalidInput):
    """The Accept header asks for a format this model does not write (HTTP 406 locally)."""


@dataclass
class Model:
    """What model_fn returns: the fitted Pipeline and the request layout."""

    pipeline: Any
    features: list[str]
    categorical: frozenset[str]
    threshold: float = 0.5


@dataclass
class Rows:
    """What input_fn returns: rows as positional lists or as objects keyed by feature."""

    rows: list[Any]
    keyed: bool


@dataclass
class Prediction:
    """What predict_fn returns: one score and one label per request row."""

    scores: np.ndarray
    labels: np.ndarray


def media_type(header: str | None) -> str:
    """`text/csv; charset=utf-8` -> `text/csv`."""
    return (header or "").split(";", 1)[0].strip().lower()


def _categorical_columns(pipeline: Any) -> frozenset[str]:
    """The columns train.py's ColumnTransformer one-hot encodes (its "categorical" part)."""
    steps = getattr(pipeline, "named_steps", {})
    preprocess = steps.get("preprocess") if hasattr(steps, "get") else None
    for name, _, columns in getattr(preprocess, "transformers_", ()):
        if name == "categorical":
            return frozenset(str(c) for c in columns)
    return frozenset()


def model_fn(model_dir: str) -> Model:
    path = Path(model_dir)
    pipeline = joblib.load(path / "model.joblib")
    schema_path = path / "schema.json"
    if schema_path.exists():
        schema = json.loads(schema_path.read_text())
        features = [str(f) for f in schema["features"]]
        categorical = frozenset(str(c) for c in schema.get("categorical", ()))
        threshold = float(schema.get("threshold", 0.5))
    else:  # a bare Pipeline fitted on a DataFrame still knows its columns
        features = [str(f) for f in pipeline.feature_names_in_]
        categorical = _categorical_columns(pipeline)
        threshold = 0.5
    return Model(pipeline=pipeline, features=features, categorical=categorical, threshold=threshold)


def _text(body: bytes | bytearray | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"request body is not UTF-8 text (byte {exc.start})") from exc


def _csv_rows(text: str) -> list[list[str]]:
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise InvalidInput(f"unreadable CSV: {exc}") from exc
    return rows


def _json_rows(text: str) -> Rows:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"unreadable JSON: {exc}") from exc
    if isinstance(doc, dict) and "instances" in doc:
        doc = doc["instances"]
    elif isinstance(doc, dict):
        doc = [doc]  # one object
    if not isinstance(doc, list):
        raise InvalidInput("JSON must be {'instances': [...]}, a list of rows, or an object")
    if doc and not isinstance(doc[0], list | dict):
        doc = [doc]  # one row of scalars
    if not doc:
        return Rows(rows=[], keyed=False)
    keyed = isinstance(doc[0], dict)
    for i, row in enumerate(doc):
        if not isinstance(row, dict if keyed else list):
            kind = "an object" if keyed else "a list"
            raise InvalidInput(f"row {i}: expected {kind} like row 0, got {type(row).__name__}")
    return Rows(rows=doc, keyed=keyed)


def input_fn(request_body: bytes | str, request_content_type: str | None) -> Rows:
    content_type = media_type(request_content_type)
    if content_type in CSV_TYPES:
        rows = Rows(rows=_csv_rows(_text(request_body)), keyed=False)
    elif content_type in JSON_TYPES:
        rows = _json_rows(_text(request_body))
    else:
        raise UnsupportedContentType(
            f"unsupported Content-Type {request_content_type!r}; send text/csv or application/json"
        )
    if not rows.rows:
        raise InvalidInput("the request holds no rows")
    return rows


def _number(value: Any, row: int, column: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"row {row}: {column!r} must be a number, got {value!r}")
    if isinstance(value, str):
        if value.strip() in MISSING_TEXT:
            return math.nan
        try:
            return float(value)
        except ValueError:
            raise InvalidInput(f"row {row}: {column!r} must be a number, got {value!r}") from None
    return float(value)


def _category(value: Any, row: int, column: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.nan
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"row {row}: {column!r} must be a string, got {value!r}")
    text = str(value)
    return np.nan if text in MISSING_TEXT else text


def to_frame(data: Rows, model: Model) -> pd.DataFrame:
    """Rows -> a typed DataFrame in the model's column order (InvalidInput on any bad cell)."""
    features = model.features
    width = len(features)
    columns: dict[str, list[Any]] = {f: [] for f in features}
    for i, row in enumerate(data.rows):
        if data.keyed:
            missing = [f for f in features if f not in row]
            if missing:
                raise InvalidInput(f"row {i}: missing feature(s) {', '.join(missing)}")
            values = [row[f] for f in features]
        else:
            if len(row) != width:
                raise InvalidInput(
                    f"row {i}: expected {width} columns ({', '.join(features)}), got {len(row)}"
                )
            values = row
        for name, value in zip(features, values, strict=True):
            if name in model.categorical:
                columns[name].append(_category(value, i, name))
            else:
                columns[name].append(_number(value, i, name))
    arrays: dict[str, np.ndarray] = {}
    for name in features:
        if name in model.categorical:
            arrays[name] = np.array(columns[name], dtype=object)
        else:
            arrays[name] = np.array(columns[name], dtype=np.float64)
            if np.isinf(arrays[name]).any():
                raise InvalidInput(f"{name!r} must be finite (got inf)")
    # One construction from typed arrays: far cheaper than typing columns one by one.
    return pd.DataFrame(arrays, columns=features, copy=False)


def predict_fn(input_data: Rows, model: Model) -> Prediction:
    frame = to_frame(input_data, model)
    scores = model.pipeline.predict_proba(frame)[:, 1].astype(np.float64)
    return Prediction(scores=scores, labels=(scores >= model.threshold).astype(np.int64))


def _choose_accept(accept: str | None) -> str:
    default = os.environ.get(DEFAULT_ACCEPT_ENV, "application/json")
    if not accept:
        return media_type(default)
    # An Accept list: the first type we can write wins (no q-value ranking).
    for part in accept.split(","):
        kind = media_type(part)
        if kind == ANY:
            return media_type(default)
        if kind in CSV_TYPES or kind in JSON_TYPES:
            return kind
    raise UnsupportedAccept(f"unsupported Accept {accept!r}; ask for text/csv or application/json")


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """(body, content type): `score,label` lines for CSV, {"predictions": [...]} for JSON."""
    kind = _choose_accept(accept)
    scores = prediction.scores.tolist()
    labels = prediction.labels.tolist()
    if kind in JSON_TYPES:
        body = json.dumps(
            {
                "predictions": [
                    {"score": s, "label": lab} for s, lab in zip(scores, labels, strict=True)
                ]
            }
        )
        return body, "application/json"
    lines = [f"{s:.8g},{lab}" for s, lab in zip(scores, labels, strict=True)]
    return "\n".join(lines), "text/csv"
