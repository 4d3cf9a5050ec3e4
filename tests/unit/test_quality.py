"""Model quality: ground-truth format, the join, metrics against scikit-learn, and the check."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import orjson
import pytest
from sklearn import metrics as skm

from driftloop.batch import FeatureBatch
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.quality import (
    JoinResult,
    QualityConfig,
    check_quality,
    classification_metrics,
    encode_ground_truth,
    join_predictions,
    predictions_by_id,
    read_ground_truth,
    regression_metrics,
    roc_auc,
)


def _raw(data: str, encoding: str, event_id: str) -> bytes:
    record = {
        "groundTruthData": {"data": data, "encoding": encoding},
        "eventMetadata": {"eventId": event_id},
    }
    return orjson.dumps(record) + b"\n"


def _stream(*lines: bytes) -> io.BytesIO:
    return io.BytesIO(b"".join(lines))


# --------------------------------------------------------------------------- format


def test_encode_ground_truth_is_the_sagemaker_merge_format() -> None:
    # Given a label for a captured row
    # When it is encoded
    line = encode_ground_truth("abc-123", 1)
    # Then it is one JSON line in the documented layout, with the label as CSV text
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {
        "groundTruthData": {"data": "1", "encoding": "CSV"},
        "eventMetadata": {"eventId": "abc-123"},
        "eventVersion": "0",
    }
    assert orjson.loads(encode_ground_truth("r", 2.5))["groundTruthData"]["data"] == "2.5"
    assert orjson.loads(encode_ground_truth("r", True))["groundTruthData"]["data"] == "1"


def test_encode_rejects_non_finite_labels_and_empty_ids() -> None:
    with pytest.raises(DriftloopError, match="finite"):
        encode_ground_truth("x", float("nan"))
    with pytest.raises(DriftloopError, match="empty event id"):
        encode_ground_truth("", 1)


def test_read_round_trips_every_encoding() -> None:
    # Given records in CSV, JSON and BASE64 encodings, as the guide allows
    b64 = base64.b64encode(b"0").decode()
    src = _stream(
        encode_ground_truth("a", 1),
        encode_ground_truth("b:1", 3.25),
        orjson.dumps(
            {
                "groundTruthData": {"data": b64, "encoding": "BASE64"},
                "eventMetadata": {"eventId": "c"},
            }
        )
        + b"\n",
        orjson.dumps(
            {
                "groundTruthData": {"data": '{"label": 1}', "encoding": "JSON"},
                "eventMetadata": {"eventId": "d"},
            }
        )
        + b"\n",
        orjson.dumps(
            {
                "groundTruthData": {"data": "true", "encoding": "CSV"},
                "eventMetadata": {"eventId": "e"},
            }
        )
        + b"\n",
        b"\n",
    )
    log = MalformedLog()
    # When read
    labels = read_ground_truth(src, log, "gt.jsonl")
    # Then every label is decoded and nothing is counted as malformed
    assert labels == {"a": 1.0, "b:1": 3.25, "c": 0.0, "d": 1.0, "e": 1.0}
    assert log.total == 0


def test_bad_lines_are_counted_with_file_and_line_and_skipped() -> None:
    # Given a file mixing good records with every kind of bad line
    src = _stream(
        encode_ground_truth("ok1", 1),
        b'{"groundTruthData": {"data": "1", "encod\n',  # truncated JSON
        b'{"groundTruthData": {"data": "1", "encoding": "CSV"}}\n',  # no eventMetadata
        _raw("!!!", "BASE64", "x"),
        _raw("cat", "CSV", "y"),
        _raw("inf", "CSV", "z"),
        b"[1, 2]\n",
        encode_ground_truth("ok2", 0),
    )
    log = MalformedLog()
    # When read
    labels = read_ground_truth(src, log, "gt.jsonl")
    # Then the good records survive and each bad line is counted once, naming its line
    assert labels == {"ok1": 1.0, "ok2": 0.0}
    assert log.total == 6
    assert log.by_reason["invalid_json"] == 1
    assert log.by_reason["missing_field"] == 1
    assert log.by_reason["bad_encoding"] == 1
    assert log.by_reason["bad_label"] == 3
    assert log.examples[0].startswith("gt.jsonl:2: invalid_json")


def test_duplicate_ids_last_wins_and_are_counted_across_files(tmp_path) -> None:
    # Given two files relabelling the same id
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(encode_ground_truth("r1", 0) + encode_ground_truth("r1", 1))
    second.write_bytes(encode_ground_truth("r1", 0))
    log = MalformedLog()
    # When both are read into one dict
    labels = read_ground_truth(first, log)
    read_ground_truth(second, log, labels=labels)
    # Then the last label wins and both overwritten labels are counted
    assert labels == {"r1": 0.0}
    assert log.by_reason["duplicate_label"] == 2


def test_missing_file_is_a_one_line_error_naming_it(tmp_path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DriftloopError, match="nope.jsonl"):
        read_ground_truth(missing, MalformedLog())


# --------------------------------------------------------------------------- join


def test_predictions_by_id_prefers_inference_id() -> None:
    # Given a batch where one row carries a caller-set inferenceId
    batch = FeatureBatch(
        columns={},
        n_rows=3,
        predictions=np.array([0.1, 0.2, 0.3]),
        event_ids=["E", "F:0", "F:1"],
        inference_ids=["inf-1", None, None],
    )
    # When indexed by row id
    preds = predictions_by_id([batch])
    # Then the inferenceId replaces the eventId, the others keep E / E:i
    assert preds == {"inf-1": 0.1, "F:0": 0.2, "F:1": 0.3}


def test_multi_row_request_with_inference_id_keeps_rows_apart() -> None:
    # Given a two-row request whose caller set inferenceId "inf-9" (the reader suffixes E:i)
    batch = FeatureBatch(
        columns={},
        n_rows=2,
        predictions=np.array([0.4, 0.6]),
        event_ids=["E:0", "E:1"],
        inference_ids=["inf-9", "inf-9"],
    )
    log = MalformedLog()
    # When indexed, then each row gets inferenceId:i and no duplicate is counted
    assert predictions_by_id([batch], log) == {"inf-9:0": 0.4, "inf-9:1": 0.6}
    assert log.total == 0


def test_join_counts_unmatched_labels_unlabelled_and_invalid() -> None:
    # Given predictions and labels that only partly overlap, one with a NaN score
    preds = {"a": 0.9, "b": 0.1, "c": float("nan"), "d": 0.5}
    labels = {"a": 1.0, "b": 0.0, "c": 1.0, "zz": 1.0}
    # When joined
    j = join_predictions(preds, labels)
    # Then matches are paired in label order and nothing disappears uncounted
    assert j.ids == ["a", "b"]
    assert j.y.tolist() == [1.0, 0.0] and j.score.tolist() == [0.9, 0.1]
    assert j.n_unmatched_labels == 1  # zz
    assert j.n_invalid == 1  # c
    assert j.n_unlabelled_predictions == 1  # d
    assert j.n_matched + j.n_invalid + j.n_unmatched_labels == len(labels)


# --------------------------------------------------------------------------- metrics vs sklearn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed: int) -> None:
    # Given random labels and scores, rounded so that ties occur
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500).astype(float)
    score = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.25, 500), 0, 1), 1)
    # When computed with numpy
    m = classification_metrics(y, score, threshold=0.5)
    # Then they equal scikit-learn's
    pred = (score >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["f0_5"] == pytest.approx(skm.fbeta_score(y, pred, beta=0.5))
    assert m["f2"] == pytest.approx(skm.fbeta_score(y, pred, beta=2))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, score))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["false_positive_rate"] == pytest.approx(fp / (fp + tn))
    assert m["true_negative_rate"] == pytest.approx(tn / (tn + fp))


def test_auc_with_all_scores_tied_is_one_half_and_single_class_is_nan() -> None:
    assert roc_auc(np.array([0, 1, 0, 1.0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1, 0.0]), np.array([0.9, 0.1])) == 1.0
    assert math.isnan(roc_auc(np.array([1, 1.0]), np.array([0.2, 0.3])))


def test_zero_division_follows_sklearn_default() -> None:
    # Given a model that never predicts the positive class
    y = np.array([0, 1, 0, 1.0])
    score = np.zeros(4)
    m = classification_metrics(y, score)
    # Then precision and F are 0, as scikit-learn reports them (zero_division default)
    assert m["precision"] == 0.0 == skm.precision_score(y, score >= 0.5, zero_division=0)
    assert m["f1"] == 0.0


def test_best_constant_classifier_reference_matches_model_monitor_example() -> None:
    # Given the AWS guide's example: 1 positive out of 4
    y = np.array([1, 0, 0, 0.0])
    m = classification_metrics(y, np.array([0.9, 0.8, 0.7, 0.1]))
    # Then the always-positive references equal the guide's figures
    assert m["precision_best_constant_classifier"] == pytest.approx(0.25)
    assert m["recall_best_constant_classifier"] == 1.0
    assert m["f1_best_constant_classifier"] == pytest.approx(0.4)
    assert m["f0_5_best_constant_classifier"] == pytest.approx(0.29411764705882354)
    assert m["f2_best_constant_classifier"] == pytest.approx(0.625)
    # and accuracy's best constant is the majority class
    assert m["accuracy_best_constant_classifier"] == pytest.approx(0.75)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    y = rng.normal(10, 3, 300)
    pred = y + rng.normal(0.5, 1.0, 300)
    m = regression_metrics(y, pred)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    const = np.full(5, 2.0)
    assert regression_metrics(const, const)["r2"] == skm.r2_score(const, const) == 1.0
    assert regression_metrics(const, const + 1)["r2"] == skm.r2_score(const, const + 1) == 0.0


# --------------------------------------------------------------------------- the check


def _joined(y: np.ndarray, score: np.ndarray) -> JoinResult:
    return JoinResult(
        ids=[f"r{i}" for i in range(y.size)],
        y=y,
        score=score,
        n_unmatched_labels=3,
        n_unlabelled_predictions=4,
    )


def _binary(n: int, noise: float, seed: int = 0) -> JoinResult:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    score = np.clip(y * 0.6 + 0.2 + rng.normal(0, noise, n), 0, 1)
    return _joined(y, score)


def test_check_quality_ok_when_auc_holds() -> None:
    # Given a baseline auc close to what the current labels show
    joined = _binary(400, 0.1)
    current_auc = roc_auc(joined.y, joined.score)
    # When checked
    r = check_quality(
        {"auc": current_auc + 0.01}, joined, QualityConfig(max_drop=0.05, min_labels=50)
    )
    # Then it is not degraded, and the counts travel into the report
    assert r.status == "ok" and not r.degraded
    d = r.to_dict()
    assert d["n_matched"] == 400 and d["n_unmatched_labels"] == 3 and d["n_unlabelled"] == 4
    assert d["metrics"]["auc"]["drop"] == pytest.approx(0.01)
    assert d["confusion_matrix"]["tp"] + d["confusion_matrix"]["fn"] == int(joined.y.sum())


def test_check_quality_degraded_when_auc_drops() -> None:
    # Given noisy predictions against a baseline auc of 0.99
    joined = _binary(400, 0.6)
    r = check_quality({"auc": 0.99}, joined, QualityConfig(max_drop=0.05, min_labels=50))
    # Then the drop exceeds max_drop
    assert r.status == "ok" and r.degraded
    assert r.metrics["auc"].drop is not None and r.metrics["auc"].drop > 0.05


def test_regression_drop_is_the_increase_in_error() -> None:
    y = np.linspace(0, 10, 200)
    joined = _joined(y, y + 2.0)  # rmse 2
    r = check_quality(
        {"rmse": 1.0}, joined, QualityConfig(problem="regression", max_drop=0.5, min_labels=10)
    )
    assert r.metric == "rmse" and r.degraded
    assert r.metrics["rmse"].drop == pytest.approx(1.0)
    better = check_quality(
        {"rmse": 3.0}, joined, QualityConfig(metric="rmse", max_drop=0.5, min_labels=10)
    )
    assert not better.degraded and better.problem == "regression"


def test_too_few_labels_is_insufficient_data_not_degraded() -> None:
    joined = _binary(20, 0.9)
    r = check_quality({"auc": 0.99}, joined, QualityConfig(min_labels=100))
    assert r.status == "insufficient_data" and not r.degraded
    assert "min_labels=100" in r.reason


def test_single_class_window_is_insufficient_data() -> None:
    joined = _joined(np.ones(200), np.linspace(0, 1, 200))
    r = check_quality({"auc": 0.9}, joined, QualityConfig(min_labels=10))
    assert r.status == "insufficient_data" and not r.degraded
    assert r.to_dict()["metrics"]["auc"]["current"] is None  # NaN is null in JSON


def test_non_binary_labels_are_counted_not_used() -> None:
    joined = _joined(np.array([0, 1, 2, 1, 0.0]), np.array([0.1, 0.9, 0.5, 0.8, 0.2]))
    r = check_quality({"auc": 1.0}, joined, QualityConfig(min_labels=1))
    assert r.n_matched == 4
    assert r.malformed.by_reason["label_not_binary"] == 1 and r.n_malformed == 1


def test_baseline_without_the_watched_metric_is_an_error() -> None:
    with pytest.raises(DriftloopError, match="no 'auc' metric"):
        check_quality({"rmse": 1.0}, _binary(10, 0.1), QualityConfig(min_labels=1))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"metric": "bogus"}, "not a binary metric"),
        ({"problem": "multiclass"}, "problem must be"),
        ({"max_drop": -1}, "max_drop"),
        ({"min_labels": 0}, "min_labels"),
        ({"threshold": 2}, "threshold"),
        ({"surprise": 1}, "unknown fields"),
    ],
)
def test_quality_config_validation(cfg: dict, message: str) -> None:
    with pytest.raises(DriftloopError, match=message):
        QualityConfig.from_dict(cfg)


def test_report_json_is_strict_json() -> None:
    r = check_quality({"auc": 0.9}, _binary(50, 0.2), QualityConfig(min_labels=10))
    text = orjson.dumps(r.to_dict())
    assert b"NaN" not in text
    assert orjson.loads(text)["report"] == "quality"
