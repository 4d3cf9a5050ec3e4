"""Model quality: ground-truth labels joined to captured predictions, and the metrics on them.

SageMaker Model Monitor's model-quality job merges labels the user uploads (the
"ground truth merge" format) with the predictions captured at the endpoint, then
computes regression or classification metrics and compares them with the baseline.
This module is that job without a container: a streaming reader for the label
files, a join by id that counts what it could not match instead of losing it,
numpy-only metrics (so it fits the Lambda bundle; the tests hold them equal to
scikit-learn's), and the gate that says whether quality has degraded.

Ids follow docs/ARCHITECTURE.md: a captured row is known by its ``inferenceId``
when the caller set one, else by its ``eventId`` (``E`` for a one-row request,
``E:i`` for row ``i`` of a multi-row request). Ground truth carries the same id
in ``eventMetadata.eventId`` (the SageMaker guide: that field holds the
``inferenceId`` when captured records have one).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from driftloop.batch import FeatureBatch
from driftloop.errors import DriftloopError, MalformedLog

REGRESSION_METRICS = ("mae", "mse", "rmse", "r2")
BINARY_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f0_5",
    "f1",
    "f2",
    "auc",
    "true_positive_rate",
    "true_negative_rate",
    "false_positive_rate",
    "false_negative_rate",
)
# Metrics where a larger value is worse: their "drop" is the increase.
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "false_positive_rate", "false_negative_rate"})
DEFAULT_METRIC = {"binary": "auc", "regression": "rmse"}

_TRUE = frozenset({"true", "yes"})
_FALSE = frozenset({"false", "no"})


# --------------------------------------------------------------------------- ground truth


def _format_label(label: float | int | bool | str) -> str:
    if isinstance(label, bool):
        return "1" if label else "0"
    if isinstance(label, str):
        return label
    value = float(label)
    if not math.isfinite(value):
        raise DriftloopError(f"ground truth: label {label!r} is not a finite number")
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def encode_ground_truth(event_id: str, label: float | int | bool | str) -> bytes:
    """One ground-truth record in the SageMaker merge format, as a JSON line with its newline.

    ``event_id`` is the captured row's id: its ``inferenceId`` if the caller set one,
    else its ``eventId`` (suffixed ``:i`` for row ``i`` of a multi-row request).
    """
    if not event_id:
        raise DriftloopError("ground truth: empty event id")
    record = {
        "groundTruthData": {"data": _format_label(label), "encoding": "CSV"},
        "eventMetadata": {"eventId": event_id},
        "eventVersion": "0",
    }
    return orjson.dumps(record) + b"\n"


def _parse_label_text(text: str) -> float:
    """A label written as text: the first CSV field, a number or true/false."""
    first = text.strip().split(",", 1)[0].strip().strip('"').strip()
    low = first.lower()
    if low in _TRUE:
        return 1.0
    if low in _FALSE:
        return 0.0
    value = float(first)  # ValueError on non-numbers: the caller counts it
    if not math.isfinite(value):
        raise ValueError(f"label {first!r} is not finite")
    return value


def _parse_json_label(data: Any) -> float:
    if isinstance(data, str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return _parse_label_text(data)
    if isinstance(data, dict):
        for key in ("label", "score", "value"):
            if key in data:
                return _parse_json_label(data[key])
        raise ValueError("JSON label object has no label/score/value field")
    if isinstance(data, list):
        if len(data) != 1:
            raise ValueError(f"JSON label list has {len(data)} items, expected 1")
        return _parse_json_label(data[0])
    if isinstance(data, bool):
        return 1.0 if data else 0.0
    if isinstance(data, int | float):
        value = float(data)
        if not math.isfinite(value):
            raise ValueError(f"label {data!r} is not finite")
        return value
    if isinstance(data, str):
        return _parse_label_text(data)
    raise ValueError(f"unsupported JSON label {data!r}")


def _decode_record(record: Any) -> tuple[str, float]:
    """(id, label) from one parsed record; KeyError/ValueError/TypeError name the problem."""
    if not isinstance(record, dict):
        raise TypeError("record is not a JSON object")
    gt = record["groundTruthData"]
    meta = record["eventMetadata"]
    if not isinstance(gt, dict) or not isinstance(meta, dict):
        raise TypeError("groundTruthData and eventMetadata must be objects")
    event_id = meta["eventId"]
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("eventMetadata.eventId is not a non-empty string")
    data = gt["data"]
    encoding = str(gt.get("encoding", "CSV")).upper()
    if encoding == "BASE64":
        if not isinstance(data, str):
            raise TypeError("BASE64 data is not a string")
        text = base64.b64decode(data, validate=True).decode("utf-8")
        return event_id, _parse_label_text(text)
    if encoding == "JSON":
        return event_id, _parse_json_label(data)
    if encoding == "CSV":
        if isinstance(data, bool | int | float):
            return event_id, _parse_json_label(data)
        if not isinstance(data, str):
            raise TypeError("CSV data is not a string")
        return event_id, _parse_label_text(data)
    raise ValueError(f"unknown encoding {encoding!r}")


def _lines(source: str | Path | IO[bytes], name: str) -> Iterator[bytes]:
    if isinstance(source, str | Path):
        try:
            with Path(source).open("rb") as fh:
                yield from fh
        except OSError as exc:
            raise DriftloopError(
                f"{name}: cannot read ground truth ({exc.strerror or exc})"
            ) from exc
    else:
        yield from source


def read_ground_truth(
    source: str | Path | IO[bytes],
    malformed: MalformedLog,
    name: str | None = None,
    *,
    labels: dict[str, float] | None = None,
) -> dict[str, float]:
    """Read ground-truth JSON lines into ``{id: label}``, streaming.

    Bad lines (invalid JSON, missing fields, undecodable or non-numeric labels) are
    counted in ``malformed`` under ``file:line`` and skipped. A repeated id keeps the
    last label; the overwritten one is counted as ``duplicate_label``. Pass ``labels``
    to accumulate several files into one dict (duplicates across files are counted too).
    """
    where = (
        name if name is not None else str(source) if isinstance(source, str | Path) else "<stream>"
    )
    out: dict[str, float] = {} if labels is None else labels
    for lineno, raw in enumerate(_lines(source, where), start=1):
        line = raw.strip()
        if not line:
            continue
        loc = f"{where}:{lineno}"
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            malformed.add("invalid_json", loc, str(exc))
            continue
        try:
            event_id, label = _decode_record(record)
        except KeyError as exc:
            malformed.add("missing_field", loc, f"no {exc.args[0]!r}")
            continue
        except (binascii.Error, UnicodeDecodeError) as exc:
            malformed.add("bad_encoding", loc, str(exc))
            continue
        except (ValueError, TypeError) as exc:
            malformed.add("bad_label", loc, str(exc))
            continue
        if event_id in out:
            malformed.add(
                "duplicate_label", loc, f"id {event_id!r} seen before; the last label wins"
            )
        out[event_id] = label
    return out


# --------------------------------------------------------------------------- join


_ROW_SUFFIX = re.compile(r":(\d+)$")


def row_id(event_id: str | None, inference_id: str | None) -> str | None:
    """The id ground truth uses for a captured row: inferenceId where present, else eventId.

    The capture reader suffixes ``:i`` to the eventId of row ``i`` of a multi-row request
    but leaves the request's inferenceId as it is; the row's id is then ``{inferenceId}:i``
    so each row stays labelable. SageMaker eventIds are UUIDs and never end in ``:digits``.
    """
    if not inference_id:
        return event_id
    suffix = _ROW_SUFFIX.search(event_id) if event_id else None
    return f"{inference_id}:{suffix.group(1)}" if suffix else inference_id


def predictions_by_id(
    batches: Iterable[FeatureBatch], malformed: MalformedLog | None = None, name: str = "capture"
) -> dict[str, float]:
    """``{row id: score}`` from captured batches (rows without a prediction or id are counted).

    A row id seen twice keeps the last score; the earlier one is counted as
    ``duplicate_prediction`` in ``malformed`` when given.
    """
    out: dict[str, float] = {}
    for batch in batches:
        if batch.predictions is None or batch.event_ids is None:
            if malformed is not None and batch.n_rows:
                malformed.add(
                    "no_prediction", name, "capture rows without output or ids", batch.n_rows
                )
            continue
        inference_ids = batch.inference_ids or [None] * batch.n_rows
        for i in range(batch.n_rows):
            rid = row_id(batch.event_ids[i], inference_ids[i])
            if rid is None:
                if malformed is not None:
                    malformed.add("no_id", name, f"row {i} has no eventId")
                continue
            if rid in out and malformed is not None:
                malformed.add(
                    "duplicate_prediction", name, f"id {rid!r} captured twice; the last wins"
                )
            out[rid] = float(batch.predictions[i])
    return out


@dataclass
class JoinResult:
    """Predictions and labels matched by id, with everything that did not match counted."""

    ids: list[str]
    y: np.ndarray  # labels, float64
    score: np.ndarray  # predicted score / value, float64
    n_unmatched_labels: int  # labels whose id matches no captured prediction
    n_unlabelled_predictions: int  # predictions with no label (yet)
    n_invalid: int = 0  # matched pairs dropped because the score or label is NaN/inf

    @property
    def n_matched(self) -> int:
        return len(self.ids)


def join_predictions(predictions: dict[str, float], labels: dict[str, float]) -> JoinResult:
    """Match labels to predictions by id; pairs with a non-finite score or label are counted."""
    ids: list[str] = []
    ys: list[float] = []
    scores: list[float] = []
    n_invalid = 0
    n_unmatched = 0
    for rid, label in labels.items():
        score = predictions.get(rid)
        if score is None:
            n_unmatched += 1
            continue
        if not (math.isfinite(score) and math.isfinite(label)):
            n_invalid += 1
            continue
        ids.append(rid)
        ys.append(label)
        scores.append(score)
    n_paired = len(ids) + n_invalid
    return JoinResult(
        ids=ids,
        y=np.asarray(ys, dtype=np.float64),
        score=np.asarray(scores, dtype=np.float64),
        n_unmatched_labels=n_unmatched,
        n_unlabelled_predictions=len(predictions) - n_paired,
        n_invalid=n_invalid,
    )


# --------------------------------------------------------------------------- metrics


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic; tied scores get average ranks.

    NaN when only one class is present (the area is undefined).
    """
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    pos = y == 1.0
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    # Average rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], sorted_scores.size]
    avg_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(score.size, dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ratio(num: float, den: float) -> float:
    # scikit-learn's default zero_division: an undefined ratio is reported as 0.
    return num / den if den else 0.0


def _fbeta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    den = b2 * precision + recall
    return (1 + b2) * precision * recall / den if den else 0.0


def confusion_counts(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    """tp/fp/tn/fn with ``score >= threshold`` predicted positive and label 1 positive."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(score, dtype=np.float64) >= threshold
    actual = y == 1.0
    return {
        "tp": int(np.sum(pred & actual)),
        "fp": int(np.sum(pred & ~actual)),
        "tn": int(np.sum(~pred & ~actual)),
        "fn": int(np.sum(~pred & actual)),
    }


def classification_metrics(
    y: np.ndarray, score: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Binary metrics named as Model Monitor names them (labels 0/1, score = P(class 1)).

    Includes the best-constant-classifier references: for precision, recall and the
    F-scores that is "always predict 1" (as Model Monitor reports it; "always 0"
    scores 0 on all of them); for accuracy it is the majority class.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if n == 0:
        return {m: float("nan") for m in BINARY_METRICS}
    c = confusion_counts(y, score, threshold)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    prevalence = (tp + fn) / n
    const_precision, const_recall = prevalence, 1.0 if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f0_5": _fbeta(precision, recall, 0.5),
        "f1": _fbeta(precision, recall, 1.0),
        "f2": _fbeta(precision, recall, 2.0),
        "auc": roc_auc(y, score),
        "true_positive_rate": recall,
        "true_negative_rate": _ratio(tn, tn + fp),
        "false_positive_rate": _ratio(fp, fp + tn),
        "false_negative_rate": _ratio(fn, fn + tp),
        "accuracy_best_constant_classifier": max(prevalence, 1.0 - prevalence),
        "precision_best_constant_classifier": const_precision,
        "recall_best_constant_classifier": const_recall,
        "f0_5_best_constant_classifier": _fbeta(const_precision, const_recall, 0.5),
        "f1_best_constant_classifier": _fbeta(const_precision, const_recall, 1.0),
        "f2_best_constant_classifier": _fbeta(const_precision, const_recall, 2.0),
        "auc_best_constant_classifier": 0.5,
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """mae, mse, rmse, r2 (r2 follows scikit-learn for a constant target: 1 if perfect else 0)."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.size == 0:
        return {m: float("nan") for m in REGRESSION_METRICS}
    err = pred - y
    mse = float(np.mean(err * err))
    ss_res = float(np.sum(err * err))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        r2 = 1.0 if ss_res == 0.0 else 0.0
    else:
        r2 = 1.0 - ss_res / ss_tot
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": r2,
        # Reference: predicting the mean of the labels.
        "rmse_best_constant_predictor": math.sqrt(ss_tot / y.size),
    }


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class QualityConfig:
    """What the quality check watches.

    ``metric``: the metric whose drop decides ``degraded`` (default ``auc`` for binary,
    ``rmse`` for regression); ``max_drop``: the largest tolerated absolute worsening
    (baseline - current for higher-is-better metrics, current - baseline for errors);
    ``min_labels``: fewer matched labels than this gives ``insufficient_data``;
    ``threshold``: the score at or above which a binary prediction counts as class 1.
    """

    problem: str | None = None
    metric: str | None = None
    max_drop: float = 0.05
    min_labels: int = 100
    threshold: float = 0.5

    def __post_init__(self) -> None:
        problem = self.problem
        if problem is None:
            problem = "regression" if self.metric in REGRESSION_METRICS else "binary"
        if problem not in DEFAULT_METRIC:
            raise DriftloopError(
                f"quality config: problem must be 'binary' or 'regression', not {problem!r}"
            )
        metric = self.metric or DEFAULT_METRIC[problem]
        allowed = REGRESSION_METRICS if problem == "regression" else BINARY_METRICS
        if metric not in allowed:
            raise DriftloopError(
                f"quality config: metric {metric!r} is not a {problem} metric "
                f"(one of {list(allowed)})"
            )
        if not (
            isinstance(self.max_drop, int | float)
            and math.isfinite(self.max_drop)
            and self.max_drop >= 0
        ):
            raise DriftloopError(
                f"quality config: max_drop must be a number >= 0, not {self.max_drop!r}"
            )
        if (
            not isinstance(self.min_labels, int)
            or isinstance(self.min_labels, bool)
            or self.min_labels < 1
        ):
            raise DriftloopError(
                f"quality config: min_labels must be an integer >= 1, not {self.min_labels!r}"
            )
        if not (isinstance(self.threshold, int | float) and 0.0 <= self.threshold <= 1.0):
            raise DriftloopError(
                f"quality config: threshold must be in [0, 1], not {self.threshold!r}"
            )
        object.__setattr__(self, "problem", problem)
        object.__setattr__(self, "metric", metric)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "quality config") -> QualityConfig:
        if not isinstance(d, dict):
            raise DriftloopError(f"{where}: expected a JSON object")
        known = {"problem", "metric", "max_drop", "min_labels", "threshold"}
        unknown = set(d) - known
        if unknown:
            raise DriftloopError(
                f"{where}: unknown fields {sorted(unknown)} (known: {sorted(known)})"
            )
        try:
            return cls(**d)
        except DriftloopError as exc:
            raise DriftloopError(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "metric": self.metric,
            "max_drop": self.max_drop,
            "min_labels": self.min_labels,
            "threshold": self.threshold,
        }


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class MetricComparison:
    current: float
    baseline: float | None
    drop: float | None  # positive = worse than the baseline

    def to_dict(self) -> dict[str, float | None]:
        return {
            "current": _json_float(self.current),
            "baseline": _json_float(self.baseline),
            "drop": _json_float(self.drop),
        }


@dataclass
class QualityReport:
    """The outcome of one quality check (its JSON form is documented in docs/report-schema.md)."""

    problem: str
    metric: str
    status: str  # "ok" | "insufficient_data"
    degraded: bool
    reason: str
    max_drop: float
    min_labels: int
    threshold: float
    n_matched: int
    n_unmatched_labels: int
    n_unlabelled: int
    n_invalid: int
    metrics: dict[str, MetricComparison]
    reference: dict[str, float]
    confusion_matrix: dict[str, int] | None
    malformed: MalformedLog = field(default_factory=MalformedLog)

    @property
    def n_malformed(self) -> int:
        return self.malformed.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": "quality",
            "version": 1,
            "problem": self.problem,
            "status": self.status,
            "degraded": self.degraded,
            "reason": self.reason,
            "metric": self.metric,
            "max_drop": self.max_drop,
            "min_labels": self.min_labels,
            "threshold": self.threshold,
            "n_matched": self.n_matched,
            "n_unmatched_labels": self.n_unmatched_labels,
            "n_unlabelled": self.n_unlabelled,
            "n_invalid": self.n_invalid,
            "n_malformed": self.n_malformed,
            "malformed": self.malformed.to_dict(),
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "reference": {k: _json_float(v) for k, v in self.reference.items()},
            "confusion_matrix": self.confusion_matrix,
        }


def _drop(metric: str, current: float, baseline: float | None) -> float | None:
    if baseline is None or not (math.isfinite(current) and math.isfinite(baseline)):
        return None
    return current - baseline if metric in LOWER_IS_BETTER else baseline - current


def check_quality(
    baseline_metrics: dict[str, float],
    joined: JoinResult,
    config: QualityConfig | None = None,
    *,
    malformed: MalformedLog | None = None,
) -> QualityReport:
    """Compare the current metrics on the matched labels with the baseline's.

    ``degraded`` is true when the watched metric worsened by more than ``max_drop``.
    Too few matched labels, or a watched metric that cannot be computed on them (AUC
    with a single class), gives ``status="insufficient_data"`` and ``degraded=False``.
    A baseline without the watched metric is a DriftloopError: the check would be blind.
    """
    config = config or QualityConfig()
    problem, metric = str(config.problem), str(config.metric)
    log = MalformedLog()
    if malformed is not None:
        log.merge(malformed)
    y, score = joined.y, joined.score
    confusion: dict[str, int] | None = None
    if problem == "binary":
        bad = (y != 0.0) & (y != 1.0)
        n_bad = int(bad.sum())
        if n_bad:
            first = joined.ids[int(np.flatnonzero(bad)[0])]
            log.add("label_not_binary", f"label {first}", "binary labels must be 0 or 1", n_bad)
            y, score = y[~bad], score[~bad]
        n_matched = int(y.size)
        values = classification_metrics(y, score, config.threshold)
        confusion = confusion_counts(y, score, config.threshold)
        names: tuple[str, ...] = BINARY_METRICS
    else:
        n_matched = int(y.size)
        values = regression_metrics(y, score)
        names = REGRESSION_METRICS
    if metric not in baseline_metrics:
        raise DriftloopError(
            f"quality: the baseline has no {metric!r} metric to compare with "
            f"(it has {sorted(baseline_metrics) or 'none'})"
        )
    comparisons = {
        name: MetricComparison(
            current=values[name],
            baseline=baseline_metrics.get(name),
            drop=_drop(name, values[name], baseline_metrics.get(name)),
        )
        for name in names
    }
    reference = {k: v for k, v in values.items() if k not in names}
    watched = comparisons[metric]
    if n_matched < config.min_labels:
        status, degraded = "insufficient_data", False
        reason = f"{n_matched} matched labels, fewer than min_labels={config.min_labels}"
    elif watched.drop is None:
        status, degraded = "insufficient_data", False
        reason = f"{metric} cannot be computed on the {n_matched} matched labels"
    else:
        status = "ok"
        degraded = watched.drop > config.max_drop
        if watched.drop > 0:
            reason = (
                f"{metric} worsened by {watched.drop:.4g} "
                f"({'more' if degraded else 'no more'} than max_drop={config.max_drop:g})"
            )
        else:
            reason = f"{metric} did not worsen (changed by {-watched.drop:+.4g} vs the baseline)"
    return QualityReport(
        problem=problem,
        metric=metric,
        status=status,
        degraded=degraded,
        reason=reason,
        max_drop=config.max_drop,
        min_labels=config.min_labels,
        threshold=config.threshold,
        n_matched=n_matched,
        n_unmatched_labels=joined.n_unmatched_labels,
        n_unlabelled=joined.n_unlabelled_predictions,
        n_invalid=joined.n_invalid,
        metrics=comparisons,
        reference=reference,
        confusion_matrix=confusion,
        malformed=log,
    )
