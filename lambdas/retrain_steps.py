"""The Lambda steps of the retraining workflow, and the order of every step.

Step Functions (in AWS) and the local loop (on a laptop) run the same workflow: one JSON
state document flows from step to step; each Lambda step takes it and returns it with
its additions (docs/ARCHITECTURE.md, "The retraining state document"). The SageMaker
steps (Train, Evaluate) are service integrations that read the names and URIs
prepare_data put in the document.

    PrepareData      snapshot {id, train_uri, validation_uri, holdout_uri, baseline_uri,
                     manifest_uri, n_train, n_validation, n_holdout, n_baseline,
                     holdout_from, baseline_from}, training_job_name,
                     processing_job_name, champion {model_name, model_data_url,
                     endpoint_config_name, variant_name} | null,
                     challenger_model_data_url, evaluation_uri
    ReadEvaluation   evaluation (evaluation.json), decision {deploy, metric, champion,
                     challenger, margin, min_improvement, higher_is_better, reason}
    RegisterModel    model_package_arn, notification (the run is recorded either way)
    DeployModel      deployment {model_name, endpoint_config_name,
                     previous_endpoint_config_name, variant_name, baseline_uri (staged),
                     baseline_target_uri, status "updating", rolled_back false, checks 0}
    CheckDeployment  deployment.status "in_progress" | "deployed" | "rolled_back" |
                     "failed", deployment.rolled_back, deployment.checks, notification

The training set grows with the traffic: a snapshot is the current training set
(`training/current.json` names it; `training/initial` before the first deployment)
plus the captured requests of the last LOOKBACK_HOURS that have a label, minus what the
current snapshot already holds. The most recent labelled rows become the holdout, kept
out of training, so champion and challenger are compared on today's data, not on the
data the champion was fitted to.

The snapshot also holds `baseline/baseline.csv`, the Train step's `baseline` channel: every
captured request of the last LOOKBACK_HOURS (labelled or not; from the start of the
triggering event's window when that is later), the traffic the new model is to serve.
train.py profiles it into the model's baseline.json, so that after a swap the drift check
compares live traffic with the post-drift world and not with the mostly pre-drift
training set (which would flag drift in every later window). With fewer than
MIN_BASELINE_ROWS captured rows it is a copy of the training set (the channel must exist:
a Step Functions task cannot add a channel conditionally).

The champion keeps serving unless everything goes right: the gate (driftloop.gate) must
prefer the challenger, the blue/green update must reach InService on the new endpoint
config; a rollback (SageMaker's alarms) leaves the old config serving and its baseline
in place. Only then does check_deployment promote the new model's baseline.json (the
drift check's reference) and point `training/current.json` at the new snapshot.
"""

from __future__ import annotations

import csv
import io
import math
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import numpy as np
import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from driftloop.capture import read_capture
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.gate import decide, higher_is_better
from driftloop.naming import resource_name
from driftloop.profile import DatasetProfile
from driftloop.quality import read_ground_truth, row_id
from driftloop.schema import Schema
from driftloop.windows import format_iso, hour_prefixes_between, parse_iso
from lambdas import _aws

logger = Logger()
metrics = Metrics()
tracer = Tracer()

# Every state of the workflow, in order (the Step Functions definition is held to it).
RETRAIN_STEPS: tuple[str, ...] = (
    "PrepareData",
    "Train",
    "Evaluate",
    "ReadEvaluation",
    "Gate",
    "RegisterModel",
    "DeployModel",
    "WaitForDeployment",
    "CheckDeployment",
    "Notify",
)
# The Lambda states and the handler (in this module) each one runs.
LAMBDA_STEPS: dict[str, str] = {
    "PrepareData": "prepare_data",
    "ReadEvaluation": "read_evaluation",
    "RegisterModel": "register_model",
    "DeployModel": "deploy_model",
    "CheckDeployment": "check_deployment",
}

CURRENT_POINTER_KEY = "training/current.json"
INITIAL_SNAPSHOT = "initial"
SPLITS = ("train", "validation", "holdout")
DEFAULT_HOLDOUT_FRACTION = 0.3
DEFAULT_MIN_HOLDOUT_ROWS = 200
# training/train.py's --baseline-min-rows default: fewer captured rows and the snapshot's
# baseline is its training set.
DEFAULT_MIN_BASELINE_ROWS = 500
BASELINE_KEY_NAME = "baseline/baseline.csv"
SPOOL_BYTES = 32 * 1024 * 1024
# SageMaker serving settings of the scikit-learn image in script mode (ARCHITECTURE.md).
MODEL_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
}
CONTENT_TYPES = ["text/csv", "application/json"]
# CustomerMetadataProperties limits: 50 entries, keys <= 128 and values <= 256 characters.
MAX_METADATA = 50


# --- the state document --------------------------------------------------------------------------


def _need(state: Any, *path: str) -> Any:
    """`state[path[0]][path[1]]...`, or a clear error naming the missing field."""
    if not isinstance(state, dict):
        raise DriftloopError(
            f"retraining state document: expected a JSON object, got {type(state).__name__}"
        )
    value: Any = state
    for i, key in enumerate(path):
        if not isinstance(value, dict) or value.get(key) is None:
            raise DriftloopError(f"retraining state document: missing {'.'.join(path[: i + 1])}")
        value = value[key]
    return value


def _run_time(state: dict[str, Any]) -> datetime:
    raw = state.get("started_at")
    return parse_iso(raw, where="state started_at") if isinstance(raw, str) else datetime.now(UTC)


# --- prepare_data --------------------------------------------------------------------------------


def _open_csv(bucket: str, key: str) -> IO[bytes] | None:
    try:
        return _aws.download(bucket, key)
    except Exception as exc:
        if _aws.is_missing(exc):
            return None
        raise


def _csv_rows(body: IO[bytes], columns: list[str], where: str) -> Iterator[list[str]]:
    """Rows of a CSV with a header, projected on `columns` (a missing column is an error)."""
    text = io.TextIOWrapper(body, encoding="utf-8", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    index = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in columns if c not in index]
    if missing:
        raise DriftloopError(f"{where}: missing column(s) {missing} (columns: {header})")
    picks = [index[c] for c in columns]
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DriftloopError(
                f"{where}:{lineno}: {len(row)} fields, the header has {len(header)}"
            )
        yield [row[i] for i in picks]


def _format_value(value: Any, categorical: bool) -> str:
    if categorical:
        return "" if value is None else str(value)
    number = float(value)
    if not math.isfinite(number):
        return ""  # missing; an infinity would stop scikit-learn, so it is dropped too
    return repr(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def _recent_labelled_rows(
    schema: Schema,
    *,
    capture_bucket: str,
    capture_prefix: str,
    truth_bucket: str,
    truth_prefix: str,
    endpoint: str,
    start: datetime,
    end: datetime,
    now: datetime,
    malformed: MalformedLog,
    baseline_start: datetime | None = None,
    baseline: CsvSpool | None = None,
) -> tuple[list[tuple[datetime, str, list[str]]], dict[str, int]]:
    """Captured requests in the hour folders [start, end) that have a label, oldest first.

    Labels are read from the hour folders [start, now): a label arrives after its request.
    Returns (inference time, row id, CSV values in schema order + target) per row.
    With `baseline`, every captured row of the hour folders [baseline_start, end) is also
    written to it (the features in schema order), labelled or not.
    """
    labels: dict[str, float] = {}
    n_label_files = 0
    for hour in hour_prefixes_between(start, now):
        for key in _aws.list_keys(truth_bucket, f"{truth_prefix}/{endpoint}/{hour}/"):
            if not key.endswith(".jsonl"):
                continue
            n_label_files += 1
            with _aws.download(truth_bucket, key) as body:
                read_ground_truth(body, malformed, f"s3://{truth_bucket}/{key}", labels=labels)

    rows: list[tuple[datetime, str, list[str]]] = []
    seen: set[str] = set()
    n_captured = n_files = 0
    labelled_hours = set(hour_prefixes_between(start, end))
    baseline_hours: set[str] = set()
    if baseline is not None:
        first = min(end, baseline_start or start)
        baseline_hours = set(hour_prefixes_between(first, end))
    hours = sorted(labelled_hours | baseline_hours)
    for variant in _aws.list_subfolders(capture_bucket, f"{capture_prefix}/{endpoint}/"):
        for hour in hours:
            for key in _aws.list_keys(capture_bucket, f"{variant}{hour}/"):
                if not key.endswith(".jsonl"):
                    continue
                wanted = hour in labelled_hours
                n_files += wanted
                with _aws.download(capture_bucket, key) as body:
                    for batch in read_capture(
                        body,
                        schema=schema,
                        malformed=malformed,
                        name=f"s3://{capture_bucket}/{key}",
                    ):
                        if baseline is not None and hour in baseline_hours:
                            baseline.write(_feature_rows(batch, schema))
                        if wanted:
                            n_captured += batch.n_rows
                            rows.extend(_labelled(batch, schema, labels, seen))
    rows.sort(key=lambda r: (r[0], r[1]))
    counts = {
        "n_capture_files": n_files,
        "n_label_files": n_label_files,
        "n_captured": n_captured,
        "n_labels": len(labels),
        "n_matched": len(rows),
    }
    return rows, counts


def _feature_rows(batch: Any, schema: Schema) -> Iterator[list[str]]:
    """Every row of a capture batch as CSV values in schema order (no label)."""
    columns = [(batch.columns.get(f), schema.is_categorical(f)) for f in schema.features]
    for i in range(batch.n_rows):
        yield [("" if col is None else _format_value(col[i], cat)) for col, cat in columns]


def _labelled(
    batch: Any, schema: Schema, labels: dict[str, float], seen: set[str]
) -> Iterable[tuple[datetime, str, list[str]]]:
    if batch.event_ids is None:
        return
    inference_ids = batch.inference_ids or [None] * batch.n_rows
    times = batch.inference_times
    columns = [(batch.columns.get(f), schema.is_categorical(f)) for f in schema.features]
    for i in range(batch.n_rows):
        rid = row_id(batch.event_ids[i], inference_ids[i])
        if rid is None or rid in seen or rid not in labels or not math.isfinite(labels[rid]):
            continue
        seen.add(rid)
        values = [("" if col is None else _format_value(col[i], cat)) for col, cat in columns]
        values.append(_format_value(labels[rid], False))
        when = (
            datetime.fromtimestamp(int(times[i].astype("datetime64[s]").astype(np.int64)), UTC)
            if times is not None and not np.isnat(times[i])
            else datetime.min.replace(tzinfo=UTC)
        )
        yield when, rid, values


class CsvSpool:
    """A CSV being written row by row, spooled to /tmp when large, then uploaded once."""

    def __init__(self, header: list[str]) -> None:
        self.n = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self._writer.writerow(header)

    def write(self, rows: Iterable[list[str]]) -> None:
        for row in rows:
            self._writer.writerow(row)
            self.n += 1
            if self.n % 4096 == 0:
                self._flush()

    def _flush(self) -> None:
        self._spool.write(self._buffer.getvalue().encode())
        self._buffer.seek(0)
        self._buffer.truncate()

    def upload(self, bucket: str, key: str) -> None:
        self._flush()
        self._spool.seek(0)
        _aws.s3().upload_fileobj(self._spool, bucket, key, ExtraArgs={"ContentType": "text/csv"})

    def close(self) -> None:
        self._spool.close()


def _write_split(
    bucket: str, key: str, header: list[str], parts: Iterable[Iterable[list[str]]]
) -> int:
    """Stream rows into a CSV object (spooled to /tmp when large); returns the row count."""
    spool = CsvSpool(header)
    try:
        for part in parts:
            spool.write(part)
        spool.upload(bucket, key)
    finally:
        spool.close()
    return spool.n


def _read_pointer(bucket: str) -> tuple[str, dict[str, Any]]:
    """The current snapshot id and its manifest ({} for the initial training set)."""
    try:
        pointer = orjson.loads(_aws.get_bytes(bucket, CURRENT_POINTER_KEY))
        snapshot = str(pointer["snapshot_id"])
    except Exception as exc:
        if _aws.is_missing(exc):
            return INITIAL_SNAPSHOT, {}
        raise DriftloopError(
            f"s3://{bucket}/{CURRENT_POINTER_KEY}: unreadable pointer ({exc})"
        ) from exc
    try:
        return snapshot, dict(
            orjson.loads(_aws.get_bytes(bucket, f"training/{snapshot}/manifest.json"))
        )
    except Exception as exc:
        if _aws.is_missing(exc):
            return snapshot, {}
        raise


def read_champion(endpoint: str) -> dict[str, Any] | None:
    """What serves now: endpoint -> endpoint config -> model (None if there is no endpoint)."""
    sm = _aws.sagemaker()
    try:
        config_name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except Exception as exc:
        if _aws.error_code(exc) == "ValidationException" or "not find" in str(exc).lower():
            return None
        raise
    variant = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
    model = sm.describe_model(ModelName=variant["ModelName"])
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    return {
        "model_name": variant["ModelName"],
        "model_data_url": container.get("ModelDataUrl"),
        "endpoint_config_name": config_name,
        "variant_name": variant["VariantName"],
    }


def _holdout_size(n_recent: int, fraction: float, minimum: int) -> int:
    if n_recent == 0:
        return 0
    return min(n_recent, max(math.ceil(fraction * n_recent), minimum))


def _serving_schema(artifacts: str, baseline_key: str) -> Schema:
    """The schema of the training set, from the serving model's baseline."""
    try:
        baseline = DatasetProfile.from_json(
            _aws.get_bytes(artifacts, baseline_key), where=f"s3://{artifacts}/{baseline_key}"
        )
    except DriftloopError:
        raise
    except Exception as exc:
        if _aws.is_missing(exc):
            raise DriftloopError(
                f"s3://{artifacts}/{baseline_key}: baseline not found (it "
                "carries the schema of the training set)"
            ) from exc
        raise
    return baseline.schema


def _baseline_start(state: dict[str, Any], end: datetime, lookback: int) -> datetime:
    """Where the new model's baseline traffic starts: the look-back, or the triggering window.

    The whole look-back (whatever the parent snapshot already holds), but no earlier than
    the start of the window whose drift or degradation triggered the run: with hourly
    windows and a week of look-back, the week would be mostly the world before the drift.
    """
    start = end - timedelta(hours=lookback)
    detail = (state.get("reason") or {}).get("detail")
    raw = detail.get("window_start") if isinstance(detail, dict) else None
    if isinstance(raw, str):
        start = max(start, min(end, parse_iso(raw, where="state reason.detail.window_start")))
    return start


@tracer.capture_method
def build_snapshot(state: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Write training/{id}/{train,validation,holdout}.csv + manifest.json; returns `snapshot`."""
    run_id = str(_need(state, "run_id"))
    endpoint = _aws.env_str("ENDPOINT_NAME")
    datasets = _aws.env_str("DATASETS_BUCKET")
    artifacts = _aws.env_str("ARTIFACTS_BUCKET")
    baseline_key = _aws.env_str("BASELINE_KEY", "baselines/current/baseline.json")
    lookback = _aws.env_int("LOOKBACK_HOURS", 168, minimum=1)
    fraction = _aws.env_float("HOLDOUT_FRACTION", DEFAULT_HOLDOUT_FRACTION)
    if not 0.0 < fraction < 1.0:
        raise _aws.ConfigError(
            f"environment variable HOLDOUT_FRACTION must be in (0, 1), not {fraction}"
        )
    min_holdout = _aws.env_int("MIN_HOLDOUT_ROWS", DEFAULT_MIN_HOLDOUT_ROWS, minimum=1)
    min_baseline = _aws.env_int("MIN_BASELINE_ROWS", DEFAULT_MIN_BASELINE_ROWS, minimum=1)

    schema = _serving_schema(artifacts, baseline_key)
    target = schema.target or "label"
    header = [*schema.features, target]

    parent, parent_manifest = _read_pointer(datasets)
    # Whole hours only: the hour in progress is left to the next snapshot.
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=lookback)
    if parent_manifest.get("captured_until"):
        start = max(start, parse_iso(parent_manifest["captured_until"], where="parent manifest"))
    baseline_start = _baseline_start(state, end, lookback)
    malformed = MalformedLog()
    baseline_rows = CsvSpool(list(schema.features))
    try:
        recent, counts = _recent_labelled_rows(
            schema,
            capture_bucket=_aws.env_str("CAPTURE_BUCKET"),
            capture_prefix=_aws.env_str("CAPTURE_PREFIX", "capture").strip("/"),
            truth_bucket=_aws.env_str("GROUND_TRUTH_BUCKET"),
            truth_prefix=_aws.env_str("GROUND_TRUTH_PREFIX", "ground-truth").strip("/"),
            endpoint=endpoint,
            start=start,
            end=max(start, end),
            now=now,
            malformed=malformed,
            baseline_start=baseline_start,
            baseline=baseline_rows,
        )
        counts["n_baseline_captured"] = baseline_rows.n
        snapshot_id = run_id
        base = f"training/{snapshot_id}"
        baseline_csv = f"{base}/{BASELINE_KEY_NAME}"
        baseline_from = "recent" if baseline_rows.n >= min_baseline else "train"
        if baseline_from == "recent":
            baseline_rows.upload(datasets, baseline_csv)
    finally:
        baseline_rows.close()

    n_hold = _holdout_size(len(recent), fraction, min_holdout)
    recent_train = [r[2] for r in recent[: len(recent) - n_hold]]
    recent_hold = [r[2] for r in recent[len(recent) - n_hold :]]

    parent_prefix = f"training/{parent}"
    sources: dict[str, list[str]] = {split: [] for split in SPLITS}
    opened: list[IO[bytes]] = []

    def parent_rows(split: str) -> Iterable[list[str]]:
        body = _open_csv(datasets, f"{parent_prefix}/{split}.csv")
        if body is None:
            if split == "train":
                raise DriftloopError(
                    f"s3://{datasets}/{parent_prefix}/train.csv: the current "
                    "training set is missing"
                )
            return iter(())
        opened.append(body)
        sources[_split_for(split)].append(f"s3://{datasets}/{parent_prefix}/{split}.csv")
        return _csv_rows(body, header, f"s3://{datasets}/{parent_prefix}/{split}.csv")

    def _split_for(split: str) -> str:
        # With recent labels, the old holdout becomes training data; without, it stays holdout.
        return "train" if split == "holdout" and recent_hold else split

    try:
        if recent_hold:
            train_parts = [parent_rows("train"), parent_rows("holdout"), recent_train]
            hold_parts: list[Iterable[list[str]]] = [recent_hold]
        else:
            train_parts = [parent_rows("train")]
            hold_parts = [parent_rows("holdout")]
        if recent_train:
            sources["train"].append("capture+ground-truth (recent)")
        if recent_hold:
            sources["holdout"].append("capture+ground-truth (most recent)")
        n_train = _write_split(datasets, f"{base}/train.csv", header, train_parts)
        n_validation = _write_split(
            datasets, f"{base}/validation.csv", header, [parent_rows("validation")]
        )
        n_holdout = _write_split(datasets, f"{base}/holdout.csv", header, hold_parts)
    finally:
        for body in opened:
            body.close()
    if n_holdout == 0:
        raise DriftloopError(
            f"snapshot {snapshot_id}: no holdout rows (no recent labelled traffic "
            f"and no holdout in s3://{datasets}/{parent_prefix}/)"
        )
    if baseline_from == "train":
        # Too little recent traffic to profile: the new model's baseline is its training set.
        _aws.s3().copy_object(
            Bucket=datasets,
            Key=baseline_csv,
            CopySource={"Bucket": datasets, "Key": f"{base}/train.csv"},
            ContentType="text/csv",
            MetadataDirective="REPLACE",
        )
    n_baseline = baseline_rows.n if baseline_from == "recent" else n_train

    manifest = {
        "snapshot_id": snapshot_id,
        "run_id": run_id,
        "endpoint": endpoint,
        "created_at": format_iso(now),
        "parent": parent,
        "columns": header,
        "schema": schema.to_dict(),
        "n_train": n_train,
        "n_validation": n_validation,
        "n_holdout": n_holdout,
        "n_recent_train": len(recent_train),
        "n_recent_holdout": len(recent_hold),
        "holdout_from": "recent" if recent_hold else "parent",
        "n_baseline": n_baseline,
        "baseline_from": baseline_from,
        "min_baseline_rows": min_baseline,
        "baseline_captured_from": format_iso(baseline_start),
        "captured_from": format_iso(start),
        "captured_until": format_iso(max(start, end)),
        "recent": counts,
        "malformed": malformed.to_dict(),
        "sources": sources,
    }
    manifest_uri = _aws.put_json(datasets, f"{base}/manifest.json", manifest)
    return {
        "id": snapshot_id,
        "train_uri": f"s3://{datasets}/{base}/train.csv",
        "validation_uri": f"s3://{datasets}/{base}/validation.csv",
        "holdout_uri": f"s3://{datasets}/{base}/holdout.csv",
        "baseline_uri": f"s3://{datasets}/{baseline_csv}",
        "manifest_uri": manifest_uri,
        "n_train": n_train,
        "n_validation": n_validation,
        "n_holdout": n_holdout,
        "n_baseline": n_baseline,
        "holdout_from": manifest["holdout_from"],
        "baseline_from": baseline_from,
    }


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def prepare_data(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Snapshot the data, name the jobs, read the champion."""
    state = dict(event)
    run_id = str(_need(state, "run_id"))
    endpoint = _aws.env_str("ENDPOINT_NAME")
    artifacts = _aws.env_str("ARTIFACTS_BUCKET")
    now = _run_time(state)
    state.setdefault("endpoint", endpoint)
    snapshot = build_snapshot(state, now)
    training_job = resource_name(endpoint, "train", run_id, now)
    state.update(
        {
            "snapshot": snapshot,
            "training_job_name": training_job,
            "processing_job_name": resource_name(endpoint, "eval", run_id, now),
            "champion": read_champion(endpoint),
            "challenger_model_data_url": f"s3://{artifacts}/models/{training_job}/output/model.tar.gz",
            "evaluation_uri": f"s3://{artifacts}/evaluations/{run_id}/",
        }
    )
    metrics.add_dimension(name="Endpoint", value=endpoint)
    metrics.add_metric(name="SnapshotRows", unit=MetricUnit.Count, value=snapshot["n_train"])
    logger.info("snapshot ready", extra={"snapshot": snapshot, "champion": state["champion"]})
    return state


# --- read_evaluation -----------------------------------------------------------------------------


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def read_evaluation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Read evaluation.json and let the gate decide."""
    state = dict(event)
    uri = str(_need(state, "evaluation_uri"))
    bucket, prefix = _aws.split_s3_uri(uri if uri.endswith(".json") else uri.rstrip("/") + "/")
    key = prefix if prefix.endswith(".json") else f"{prefix}evaluation.json"
    where = f"s3://{bucket}/{key}"
    try:
        evaluation = orjson.loads(_aws.get_bytes(bucket, key))
    except orjson.JSONDecodeError as exc:
        raise DriftloopError(f"{where}: evaluation is not valid JSON ({exc})") from exc
    except Exception as exc:
        if _aws.is_missing(exc):
            raise DriftloopError(
                f"{where}: evaluation not found (did the Evaluate job run?)"
            ) from exc
        raise
    if not isinstance(evaluation, dict):
        raise DriftloopError(f"{where}: evaluation must be a JSON object")
    metric = _aws.env_str("GATE_METRIC", str(evaluation.get("metric") or "auc"))
    min_improvement = _aws.env_float("MIN_IMPROVEMENT", 0.0)
    champion_metrics = evaluation.get("champion")
    if champion_metrics is None and state.get("champion"):
        # A champion serves but was not evaluated: nothing to compare, so keep it.
        champion_metrics = {}
    decision = decide(
        champion_metrics if isinstance(champion_metrics, dict) or champion_metrics is None else {},
        evaluation.get("challenger") if isinstance(evaluation.get("challenger"), dict) else None,
        metric=metric,
        higher_is_better=higher_is_better(metric),
        min_improvement=min_improvement,
    )
    state["evaluation"] = evaluation
    state["decision"] = decision.to_dict()
    metrics.add_metric(name="ChallengerAccepted", unit=MetricUnit.Count, value=int(decision.deploy))
    logger.info("gate decision", extra={"decision": state["decision"]})
    return state


# --- register_model ------------------------------------------------------------------------------


def _meta_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text[:256]


def _hyperparameters(training_job_name: str | None, state: dict[str, Any]) -> dict[str, str]:
    """The training job's hyperparameters as SageMaker recorded them (else the state's)."""
    if training_job_name:
        try:
            found = _aws.sagemaker().describe_training_job(TrainingJobName=training_job_name)
            return dict(found.get("HyperParameters") or {})
        except Exception as exc:
            logger.warning(
                "training job not found; hyperparameters from the state document",
                extra={"training_job_name": training_job_name, "error": str(exc)},
            )
    return {str(k): str(v) for k, v in dict(state.get("hyperparameters") or {}).items()}


def registry_metadata(state: dict[str, Any], hyperparameters: dict[str, str]) -> dict[str, str]:
    """CustomerMetadataProperties: the run, the data, the metrics, the verdict (<= 50 entries)."""
    decision = state.get("decision") or {}
    evaluation = state.get("evaluation") or {}
    meta: dict[str, str] = {
        "run_id": str(state.get("run_id")),
        "endpoint": str(state.get("endpoint")),
        "snapshot_id": str((state.get("snapshot") or {}).get("id")),
        "decision": "deploy" if decision.get("deploy") else "reject",
        "gate_metric": str(decision.get("metric")),
        "champion_value": _meta_value(decision.get("champion")),
        "challenger_value": _meta_value(decision.get("challenger")),
        "margin": _meta_value(decision.get("margin")),
        "min_improvement": _meta_value(decision.get("min_improvement")),
        "reason": _meta_value(decision.get("reason", "")),
        "training_job_name": str(state.get("training_job_name")),
        "n_holdout": _meta_value(evaluation.get("n_holdout")),
    }
    for side in ("challenger", "champion"):
        for name, value in sorted(dict(evaluation.get(side) or {}).items()):
            if len(meta) < MAX_METADATA - 10:
                meta[f"{side}.{name}"[:128]] = _meta_value(value)
    for name, value in sorted(hyperparameters.items()):
        if len(meta) < MAX_METADATA:
            meta[f"hp.{name}"[:128]] = _meta_value(value)
    return meta


def notification(state: dict[str, Any], outcome: str) -> dict[str, Any]:
    """Subject, message and event detail summarising the run (for SNS / EventBridge)."""
    decision = state.get("decision") or {}
    endpoint = state.get("endpoint")
    detail = {
        "endpoint": endpoint,
        "run_id": state.get("run_id"),
        "outcome": outcome,
        "metric": decision.get("metric"),
        "champion": decision.get("champion"),
        "challenger": decision.get("challenger"),
        "margin": decision.get("margin"),
        "reason": decision.get("reason"),
        "model_package_arn": state.get("model_package_arn"),
        "snapshot_id": (state.get("snapshot") or {}).get("id"),
        "model_name": (state.get("deployment") or {}).get("model_name"),
    }
    subject = f"driftloop {endpoint}: retraining {outcome}"[:100]
    lines = [f"{k}: {v}" for k, v in detail.items() if v is not None]
    return {"subject": subject, "message": "\n".join(lines), "detail": detail}


def _ensure_group(group: str) -> None:
    sm = _aws.sagemaker()
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except Exception as exc:
        if _aws.error_code(exc) not in ("ValidationException", "ResourceNotFound"):
            raise
        sm.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription="driftloop retraining runs"
        )


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def register_model(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record the challenger in the model registry: Approved or Rejected, every run."""
    state = dict(event)
    decision = _need(state, "decision")
    group = _aws.env_str("MODEL_PACKAGE_GROUP")
    image = _aws.env_str("IMAGE_URI")
    model_data = str(_need(state, "challenger_model_data_url"))
    approved = bool(decision.get("deploy"))
    hyper = _hyperparameters(state.get("training_job_name"), state)
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": str(decision.get("reason", ""))[:1000],
        "ModelApprovalStatus": "Approved" if approved else "Rejected",
        "InferenceSpecification": {
            "Containers": [
                {"Image": image, "ModelDataUrl": model_data, "Environment": dict(MODEL_ENVIRONMENT)}
            ],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
        },
        "CustomerMetadataProperties": registry_metadata(state, hyper),
    }
    if state.get("evaluation_uri"):
        request["ModelMetrics"] = {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": str(state["evaluation_uri"]).rstrip("/") + "/evaluation.json",
                }
            }
        }
    _ensure_group(group)
    arn = _aws.sagemaker().create_model_package(**request)["ModelPackageArn"]
    state["model_package_arn"] = arn
    state["notification"] = notification(state, "approved" if approved else "rejected")
    logger.info("model registered", extra={"arn": arn, "approved": approved})
    return state


# --- deploy_model --------------------------------------------------------------------------------


def extract_member(bucket: str, key: str, member: str) -> bytes:
    """One file out of a model.tar.gz on S3 (streamed through a spool, never fully in memory)."""
    where = f"s3://{bucket}/{key}"
    try:
        body = _aws.download(bucket, key)
    except Exception as exc:
        if _aws.is_missing(exc):
            raise DriftloopError(f"{where}: model artefact not found") from exc
        raise
    with body:
        try:
            with tarfile.open(fileobj=body, mode="r:*") as tar:
                for info in tar:
                    if info.isfile() and info.name.lstrip("./") == member:
                        handle = tar.extractfile(info)
                        if handle is not None:
                            return handle.read()
        except tarfile.TarError as exc:
            raise DriftloopError(f"{where}: not a readable tar archive ({exc})") from exc
    raise DriftloopError(f"{where}: no {member} in the model archive")


def _endpoint_target(endpoint: str) -> str | None:
    """The config the endpoint runs or is moving to (None: no such endpoint)."""
    try:
        described = _aws.sagemaker().describe_endpoint(EndpointName=endpoint)
    except Exception as exc:
        if _aws.error_code(exc) == "ValidationException" or "not find" in str(exc).lower():
            return None
        raise
    pending = described.get("PendingDeploymentSummary") or {}
    return str(pending.get("EndpointConfigName") or described["EndpointConfigName"])


def _create_once(create: Any) -> None:
    """Run a SageMaker Create* call; a resource that already exists (a retry) is fine."""
    try:
        create()
    except Exception as exc:
        message = str(exc).lower()
        if _aws.error_code(exc) == "ValidationException" and "already exist" in message:
            return
        raise


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def deploy_model(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Model + endpoint config (with data capture) + blue/green UpdateEndpoint."""
    state = dict(event)
    if not _need(state, "decision").get("deploy"):
        raise DriftloopError("deploy_model: the gate rejected this challenger; nothing to deploy")
    run_id = str(_need(state, "run_id"))
    model_data = str(_need(state, "challenger_model_data_url"))
    endpoint = _aws.env_str("ENDPOINT_NAME")
    artifacts = _aws.env_str("ARTIFACTS_BUCKET")
    baseline_key = _aws.env_str("BASELINE_KEY", "baselines/current/baseline.json")
    deployment_config = _aws.env_json("DEPLOYMENT_CONFIG")
    capture_config = _aws.env_json("CAPTURE_CONFIG")
    instance_type = _aws.env_str("INSTANCE_TYPE")
    instance_count = _aws.env_int("INSTANCE_COUNT", 1, minimum=1)
    role = _aws.env_str("SAGEMAKER_ROLE_ARN")
    image = _aws.env_str("IMAGE_URI")
    champion = state.get("champion") or None
    variant = (champion or {}).get("variant_name") or "AllTraffic"

    # Stage the challenger's baseline first: a model whose archive has no baseline would
    # leave the drift check blind, so it is never deployed.
    bucket, key = _aws.split_s3_uri(model_data)
    baseline = extract_member(bucket, key, "baseline.json")
    DatasetProfile.from_json(baseline, where=f"{model_data}!baseline.json")
    model_name = resource_name(endpoint, "model", run_id, _run_time(state))
    staged_key = f"baselines/{model_name}/baseline.json"
    staged_uri = _aws.put_bytes(artifacts, staged_key, baseline, "application/json")

    sm = _aws.sagemaker()
    # Step Functions retries a failed Lambda step: every call below is made idempotent,
    # so a retry after a timeout finishes the deployment instead of failing on "exists".
    _create_once(
        lambda: sm.create_model(
            ModelName=model_name,
            ExecutionRoleArn=role,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": model_data,
                "Environment": dict(MODEL_ENVIRONMENT),
            },
        )
    )
    endpoint_config: dict[str, Any] = {
        "EndpointConfigName": model_name,
        "ProductionVariants": [
            {
                "VariantName": variant,
                "ModelName": model_name,
                "InitialInstanceCount": instance_count,
                "InstanceType": instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
        "DataCaptureConfig": capture_config,
    }
    _create_once(lambda: sm.create_endpoint_config(**endpoint_config))
    target = _endpoint_target(endpoint)
    if target == model_name:
        logger.info("the endpoint already runs or deploys this config (a retried step)")
    elif target is not None:
        sm.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=model_name, DeploymentConfig=deployment_config
        )
    else:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=model_name)
    state["deployment"] = {
        "model_name": model_name,
        "endpoint_config_name": model_name,
        "previous_endpoint_config_name": (champion or {}).get("endpoint_config_name"),
        "variant_name": variant,
        "baseline_uri": staged_uri,
        "baseline_target_uri": f"s3://{artifacts}/{baseline_key}",
        "status": "updating",
        "rolled_back": False,
        "checks": 0,
    }
    logger.info("deployment started", extra={"deployment": state["deployment"]})
    return state


# --- check_deployment ----------------------------------------------------------------------------


def _promote(state: dict[str, Any]) -> None:
    """The new model serves: its baseline becomes the reference, its snapshot the current set."""
    deployment = state["deployment"]
    src_bucket, src_key = _aws.split_s3_uri(deployment["baseline_uri"])
    dst_bucket, dst_key = _aws.split_s3_uri(deployment["baseline_target_uri"])
    _aws.s3().copy_object(
        Bucket=dst_bucket,
        Key=dst_key,
        CopySource={"Bucket": src_bucket, "Key": src_key},
        ContentType="application/json",
        MetadataDirective="REPLACE",
    )
    snapshot = state.get("snapshot") or {}
    if snapshot.get("manifest_uri"):
        datasets, _ = _aws.split_s3_uri(snapshot["manifest_uri"])
        _aws.put_json(
            datasets,
            CURRENT_POINTER_KEY,
            {
                "snapshot_id": snapshot["id"],
                "run_id": state.get("run_id"),
                "model_name": deployment["model_name"],
                "updated_at": format_iso(datetime.now(UTC)),
            },
        )


IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def check_deployment(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Where is the blue/green update? in_progress (wait and ask again) / deployed / rolled_back."""
    state = dict(event)
    deployment = dict(_need(state, "deployment"))
    endpoint = _aws.env_str("ENDPOINT_NAME")
    described = _aws.sagemaker().describe_endpoint(EndpointName=endpoint)
    status = described["EndpointStatus"]
    serving = described.get("EndpointConfigName")
    deployment["checks"] = int(deployment.get("checks", 0)) + 1
    deployment["endpoint_status"] = status
    deployment["serving_endpoint_config_name"] = serving
    if status in IN_PROGRESS:
        deployment["status"] = "in_progress"
    elif status == "InService" and serving == deployment["endpoint_config_name"]:
        deployment.update(status="deployed", rolled_back=False)
    elif status == "InService":
        # SageMaker's auto-rollback put the old fleet back: the champion keeps serving.
        deployment.update(status="rolled_back", rolled_back=True)
    else:  # Failed, UpdateRollbackFailed, OutOfService, Deleting
        deployment.update(
            status="failed",
            rolled_back=serving != deployment["endpoint_config_name"],
            failure_reason=described.get("FailureReason"),
        )
    state["deployment"] = deployment
    if deployment["status"] == "deployed":
        _promote(state)
    if deployment["status"] != "in_progress":
        state["notification"] = notification(state, deployment["status"])
        metrics.add_dimension(name="Endpoint", value=endpoint)
        metrics.add_metric(
            name="DeploymentRolledBack",
            unit=MetricUnit.Count,
            value=int(deployment["status"] != "deployed"),
        )
    logger.info("deployment check", extra={"deployment": deployment})
    return state
