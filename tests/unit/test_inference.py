"""The serving hooks: CSV and JSON in, CSV and JSON out, and clear errors for bad payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from training import inference, train
from training.datagen import CATEGORICAL_FEATURES, FEATURES, TARGET, schema_dict, training_set
from training.inference import InvalidInput, UnsupportedAccept, UnsupportedContentType

# One worker runs this module, so its module-scoped model is built once.
pytestmark = pytest.mark.xdist_group("ml-inference")


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    # HistGradientBoosting's OpenMP threads spin against the other test worker on a
    # 2-core machine (10x slower); one thread is faster for these small fits.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A small model written the way train.py writes it (no baseline needed here).
    out = tmp_path_factory.mktemp("model")
    frame = training_set(1500, seed=21)
    args = train.parse_args(["--max-iter", "30", "--train", "unused"])
    pipeline = train.build_pipeline(list(FEATURES), list(CATEGORICAL_FEATURES), args)
    pipeline.fit(frame[list(FEATURES)], frame[TARGET])
    joblib.dump(pipeline, out / "model.joblib")
    (out / "schema.json").write_text(json.dumps({**schema_dict(), "threshold": 0.5}))
    return out


@pytest.fixture(scope="module")
def model(model_dir: Path) -> inference.Model:
    return inference.model_fn(str(model_dir))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return training_set(5, seed=22)[list(FEATURES)]


def _csv(frame: pd.DataFrame) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in frame.itertuples(index=False))


def _expected(model: inference.Model, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.pipeline.predict_proba(frame)[:, 1])


def _serve(model: inference.Model, body: str | bytes, ctype: str, accept: str | None) -> tuple:  # type: ignore[type-arg]
    data = inference.input_fn(body, ctype)
    return inference.output_fn(inference.predict_fn(data, model), accept)


def test_model_fn_reads_the_schema_order_and_threshold(model: inference.Model) -> None:
    assert model.features == list(FEATURES)
    assert model.categorical == frozenset(CATEGORICAL_FEATURES)
    assert model.threshold == 0.5


def test_csv_many_rows_round_trip_matches_the_pipeline(
    model: inference.Model, rows: pd.DataFrame
) -> None:
    # Given five rows as headerless CSV with a charset parameter
    body, ctype = _serve(model, _csv(rows).encode(), "text/csv; charset=utf-8", "text/csv")
    # Then the answer is one `score,label` line per row, equal to the pipeline's scores
    assert ctype == "text/csv"
    lines = body.split("\n")
    assert len(lines) == 5
    scores = np.array([float(line.split(",")[0]) for line in lines])
    labels = [int(line.split(",")[1]) for line in lines]
    np.testing.assert_allclose(scores, _expected(model, rows), rtol=1e-6)
    assert labels == [int(s >= 0.5) for s in scores]


def test_csv_single_row_in_json_out(model: inference.Model, rows: pd.DataFrame) -> None:
    body, ctype = _serve(model, _csv(rows.iloc[:1]), "text/csv", "application/json")
    assert ctype == "application/json"
    doc = json.loads(body)
    assert len(doc["predictions"]) == 1
    assert doc["predictions"][0]["score"] == pytest.approx(_expected(model, rows.iloc[:1])[0])
    assert doc["predictions"][0]["label"] in (0, 1)


@pytest.mark.parametrize(
    "shape", ["instances_lists", "instances_objects", "list_of_lists", "list_of_objects"]
)
def test_json_request_shapes_agree(model: inference.Model, rows: pd.DataFrame, shape: str) -> None:
    # Given the same rows in each JSON shape the endpoint accepts
    lists = rows.astype(object).to_numpy().tolist()
    objects = rows.to_dict(orient="records")
    payload = {
        "instances_lists": {"instances": lists},
        "instances_objects": {"instances": objects},
        "list_of_lists": lists,
        "list_of_objects": objects,
    }[shape]
    # When they are served
    body, _ = _serve(model, json.dumps(payload), "application/json", "application/json")
    # Then every shape gives the pipeline's scores
    scores = [p["score"] for p in json.loads(body)["predictions"]]
    np.testing.assert_allclose(scores, _expected(model, rows), rtol=1e-9)


def test_json_single_row_and_single_object(model: inference.Model, rows: pd.DataFrame) -> None:
    one = rows.iloc[:1]
    flat = json.dumps(one.astype(object).to_numpy().tolist()[0])
    obj = json.dumps(one.to_dict(orient="records")[0])
    for body in (flat, obj):
        out, _ = _serve(model, body, "application/json", "text/csv")
        assert float(out.split(",")[0]) == pytest.approx(_expected(model, one)[0], rel=1e-6)


def test_missing_values_and_unseen_categories_are_served(model: inference.Model) -> None:
    # An empty numeric field, a JSON null and a category the model never saw still score
    csv_body = "42,,10000,700,0.3,5,6,0,brand_new_purpose,rent,north,salaried"
    out, _ = _serve(model, csv_body, "text/csv", "text/csv")
    score = float(out.split(",")[0])
    assert 0.0 < score < 1.0
    obj = dict(zip(FEATURES, csv_body.split(","), strict=True))
    obj["income"] = None
    obj["region"] = None
    out_json, _ = _serve(model, json.dumps(obj), "application/json", "application/json")
    assert 0.0 < json.loads(out_json)["predictions"][0]["score"] < 1.0


def test_accept_any_or_absent_defaults_to_json_and_env_can_change_it(
    model: inference.Model, rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _serve(model, _csv(rows), "text/csv", "*/*")[1] == "application/json"
    assert _serve(model, _csv(rows), "text/csv", None)[1] == "application/json"
    assert _serve(model, _csv(rows), "text/csv", "image/png, text/csv;q=0.9")[1] == "text/csv"
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    assert _serve(model, _csv(rows), "text/csv", "*/*")[1] == "text/csv"


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        ("1,2,3", "text/csv", "row 0: expected 12 columns"),
        (
            "42,abc,10000,700,0.3,5,6,0,car,rent,north,salaried",
            "text/csv",
            "row 0: 'income' must be a number, got 'abc'",
        ),
        (
            "42,1,10000,700,0.3,5,6,0,car,rent,north,salaried\n1,2",
            "text/csv",
            "row 1: expected 12 columns",
        ),
        ("", "text/csv", "no rows"),
        ("{not json", "application/json", "unreadable JSON"),
        ('{"instances": 3}', "application/json", "JSON must be"),
        ('[{"age": 3}]', "application/json", "row 0: missing feature(s) income"),
        (
            '[[1,2,3,4,5,6,7,8,"a","b","c","d"], {"age": 1}]',
            "application/json",
            "row 1: expected a list like row 0",
        ),
        (
            '[[true,2,3,4,5,6,7,8,"a","b","c","d"]]',
            "application/json",
            "row 0: 'age' must be a number",
        ),
        (
            '[[1,2,3,4,5,6,7,8,["x"],"b","c","d"]]',
            "application/json",
            "row 0: 'purpose' must be a string",
        ),
        ("42,inf,10000,700,0.3,5,6,0,car,rent,north,salaried", "text/csv", "finite (got inf)"),
        (b"\xff\xfe1,2", "text/csv", "not UTF-8"),
    ],
)
def test_bad_payloads_raise_invalid_input_naming_row_and_column(
    model: inference.Model, body: str | bytes, ctype: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        inference.predict_fn(inference.input_fn(body, ctype), model)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # what the real container sees


def test_unsupported_content_type_and_accept(model: inference.Model, rows: pd.DataFrame) -> None:
    with pytest.raises(UnsupportedContentType, match="application/x-npy"):
        inference.input_fn(b"\x93NUMPY", "application/x-npy")
    prediction = inference.predict_fn(inference.input_fn(_csv(rows), "text/csv"), model)
    with pytest.raises(UnsupportedAccept, match="application/x-protobuf"):
        inference.output_fn(prediction, "application/x-protobuf")


def test_model_fn_without_schema_falls_back_to_the_pipeline_columns(
    model_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "model.joblib").write_bytes((model_dir / "model.joblib").read_bytes())
    # Given a model dir holding only model.joblib
    bare = inference.model_fn(str(tmp_path))
    # Then the layout comes from the fitted Pipeline and rows still serve
    assert bare.features == list(FEATURES)
    assert bare.categorical == frozenset(CATEGORICAL_FEATURES)
    out, _ = _serve(bare, "42,1,10000,700,0.3,5,6,0,car,rent,north,salaried", "text/csv", None)
    assert 0.0 < json.loads(out)["predictions"][0]["score"] < 1.0
