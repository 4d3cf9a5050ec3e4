"""SageMaker script-mode training entry point: fit the model and write its baseline.

The prebuilt SageMaker scikit-learn image runs `python train.py --key value ...` with
the job's hyperparameters and sets SM_MODEL_DIR, SM_CHANNEL_TRAIN, ... (the local
runtime, driftloop.local.training, does exactly the same). Everything written to the
model dir ends up in model.tar.gz:

    model.joblib       the scikit-learn Pipeline (preprocessing + classifier)
    schema.json        feature order and kinds (the CSV request layout) and the target
    evaluation.json    validation metrics (Model Monitor metric names) and row counts
    baseline.json      driftloop profile of the features and scores the model is to serve
                       (the baseline channel's rows when it has enough, else the training
                       set; top-level `source` says which), validation metrics inside
    statistics.json    the same baseline as Model Monitor statistics
    constraints.json   ... and constraints
    code/inference.py  the serving hooks (copied from next to this script), so the
                       tarball SageMaker packs from SM_MODEL_DIR is servable as is
                       (SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code)

The optional `baseline` channel (SM_CHANNEL_BASELINE; a CSV with the feature columns,
the label optional) holds the traffic the model is trained to serve: the retraining
workflow puts the recent captured requests there, so that after a swap the drift check
compares live traffic with the post-drift world, not with the mostly pre-drift training
set. With fewer than --baseline-min-rows rows (default 500) it is ignored and the
training set is profiled, as without the channel.

Validation metrics are printed as `validation:auc=0.913;` for the SageMaker metric
definitions (regexes in docs/training.md). Bad input stops the job with one line
naming the file and the column; the exit code is 1 and, in a container, the message
also goes to /opt/ml/output/failure (SageMaker shows it as the FailureReason).

This module is also importable (tests call `train(args)`), so it does its work in
main() behind `__main__`. It imports nothing from training/ (in the container it runs
as a top-level script next to the driftloop package).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

DEFAULT_TARGET = "default"
# The demo data's request layout (training/datagen.py); other data sets pass --features
# (or "auto": every column but the target, in the file's order) and --categorical.
DEFAULT_FEATURES = (
    "age,income,loan_amount,credit_score,debt_to_income,employment_years,"
    "num_open_accounts,num_delinquencies,purpose,home_ownership,region,employment_type"
)
DEFAULT_CATEGORICAL = "purpose,home_ownership,region,employment_type"
MISSING_CATEGORY = "__missing__"
DATA_SUFFIXES = (".csv", ".csv.gz")
# Fewer rows than this in the baseline channel and the training set is profiled instead:
# a few hundred rows give the baseline's bins too little resolution.
DEFAULT_BASELINE_MIN_ROWS = 500
# Metrics printed for the SageMaker metric definitions, in this order.
PRINTED_METRICS = ("auc", "accuracy", "precision", "recall", "f1", "log_loss")


class TrainingError(Exception):
    """Bad input or configuration: one line naming the channel/file and the column."""


class EmptyChannelError(TrainingError):
    """A channel without rows (no data files, or only headers)."""


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    """The path an optional channel's SM_CHANNEL_* variable names, if it is set."""
    value = env.get(name)
    return Path(value) if value else None


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _feature_list(text: str) -> list[str] | None:
    return None if text.strip().lower() == "auto" else _csv_list(text)


def _boolean(text: str) -> bool:
    # SageMaker passes every hyperparameter as a string ("True", "false", "1").
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Hyperparameters (kebab-case, as SageMaker passes them) and the SM_* paths."""
    env = os.environ
    p = argparse.ArgumentParser(description="Train the driftloop demo classifier (script mode).")
    hp = p.add_argument_group("hyperparameters")
    # Defaults tuned on training.datagen data (4k-14k rows): small trees, shrinkage and
    # early stopping beat the scikit-learn defaults by ~0.015 AUC on a holdout.
    hp.add_argument("--learning-rate", type=float, default=0.05)
    hp.add_argument("--max-iter", type=int, default=400)
    hp.add_argument("--max-leaf-nodes", type=int, default=8)
    hp.add_argument("--min-samples-leaf", type=int, default=50)
    hp.add_argument("--l2-regularization", type=float, default=1.0)
    hp.add_argument(
        "--early-stopping",
        type=_boolean,
        default=True,
        help="stop when 10%% of train held out inside the model stops improving (true/false)",
    )
    hp.add_argument("--seed", type=int, default=0)
    hp.add_argument("--target", default=DEFAULT_TARGET)
    hp.add_argument(
        "--categorical",
        type=_csv_list,
        default=_csv_list(DEFAULT_CATEGORICAL),
        help="comma-separated categorical feature names ('' for none)",
    )
    hp.add_argument(
        "--features",
        type=_feature_list,
        default=_csv_list(DEFAULT_FEATURES),
        help="comma-separated feature names in request order, or 'auto' for every column "
        "but the target in the training file's order (default: the demo data's features)",
    )
    hp.add_argument("--threshold", type=float, default=0.5, help="score at which label = 1")
    hp.add_argument("--baseline-bins", type=int, default=None, help="numeric bins in baseline")
    hp.add_argument(
        "--baseline-min-rows",
        type=int,
        default=DEFAULT_BASELINE_MIN_ROWS,
        help="rows the baseline channel needs to be profiled instead of the training set",
    )
    paths = p.add_argument_group("paths (SageMaker sets these through SM_* variables)")
    paths.add_argument("--model-dir", type=Path, default=Path(env.get("SM_MODEL_DIR", "model")))
    paths.add_argument(
        "--train", type=Path, default=Path(env.get("SM_CHANNEL_TRAIN", "data/train"))
    )
    paths.add_argument(
        "--validation",
        type=Path,
        default=_env_path(env, "SM_CHANNEL_VALIDATION"),
        help="validation channel (default: a seeded 20%% split of train)",
    )
    paths.add_argument(
        "--baseline",
        type=Path,
        default=_env_path(env, "SM_CHANNEL_BASELINE"),
        help="baseline channel: the traffic to profile (default: the training set)",
    )
    paths.add_argument(
        "--output-data-dir", type=Path, default=Path(env.get("SM_OUTPUT_DATA_DIR", "output"))
    )
    args = p.parse_args(argv)
    if not 0.0 < args.threshold < 1.0:
        p.error("--threshold must be between 0 and 1")
    if args.max_iter < 1 or args.max_leaf_nodes < 2 or args.learning_rate <= 0:
        p.error("--max-iter >= 1, --max-leaf-nodes >= 2 and --learning-rate > 0 are required")
    return args


# --------------------------------------------------------------------------- data


def channel_files(channel: Path, name: str) -> list[Path]:
    """The data files of a channel (a folder, walked recursively, or one file), sorted."""
    if channel.is_file():
        return [channel]
    if not channel.is_dir():
        raise TrainingError(f"{name} channel {channel}: no such file or directory")
    files = sorted(f for f in channel.rglob("*") if f.is_file() and f.name.endswith(DATA_SUFFIXES))
    if not files:
        raise EmptyChannelError(f"{name} channel {channel}: empty channel (no *.csv files)")
    return files


def _coerce_numeric(frame: pd.DataFrame, column: str, path: Path) -> None:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        # +2: the header is line 1 and rows count from 0.
        raise TrainingError(
            f"{path}:{row + 2}: column {column!r} is numeric but holds {raw.iloc[row]!r}"
        )
    frame[column] = values.astype(np.float64)


def _check_target(frame: pd.DataFrame, target: str, path: Path) -> None:
    _coerce_numeric(frame, target, path)
    if frame[target].isna().any():
        row = int(np.flatnonzero(frame[target].isna().to_numpy())[0])
        raise TrainingError(f"{path}:{row + 2}: target {target!r} is empty")


def read_channel(
    channel: Path,
    name: str,
    *,
    target: str,
    categorical: Sequence[str],
    features: Sequence[str] | None,
    labelled: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """All rows of a channel with the features typed (numeric float64, categorical str).

    `labelled=False` (the baseline channel): the target column is optional and not returned.
    """
    frames: list[pd.DataFrame] = []
    for path in channel_files(channel, name):
        try:
            frame = pd.read_csv(path, dtype=dict.fromkeys(categorical, str), low_memory=False)
        except pd.errors.EmptyDataError:
            continue  # an empty file: counted below if every file is empty
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise TrainingError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from exc
        if features is None:
            features = [c for c in frame.columns if c != target]
        required = [*features, *categorical, *([target] if labelled else [])]
        for column in dict.fromkeys(required):
            if column not in frame.columns:
                have = ", ".join(map(str, frame.columns))
                raise TrainingError(f"{path}: missing column {column!r} (columns: {have})")
        for column in features:
            if column not in categorical:
                _coerce_numeric(frame, column, path)
        if labelled:
            _check_target(frame, target, path)
        frames.append(frame[[*features, *([target] if labelled else [])]])
    if features is None or not frames or sum(len(f) for f in frames) == 0:
        raise EmptyChannelError(f"{name} channel {channel}: no rows")
    missing_cat = [c for c in categorical if c not in features]
    if missing_cat:
        raise TrainingError(
            f"{name} channel {channel}: categorical {missing_cat} not among the features"
        )
    data = pd.concat(frames, ignore_index=True)
    for column in categorical:
        data[column] = data[column].astype(object).where(data[column].notna(), np.nan)
    if not labelled:
        return data, list(features)
    labels = set(np.unique(data[target].to_numpy()).tolist())
    if not labels <= {0.0, 1.0}:
        raise TrainingError(
            f"{name} channel {channel}: target {target!r} must be 0/1, found {sorted(labels)[:5]}"
        )
    data[target] = data[target].astype(np.int64)
    return data, list(features)


def read_baseline(
    args: argparse.Namespace, features: Sequence[str], categorical: Sequence[str]
) -> tuple[pd.DataFrame | None, str]:
    """The baseline channel's rows, or None (absent, empty or too small) and why."""
    if args.baseline is None:
        return None, "no baseline channel"
    if not args.baseline.exists():
        return None, f"baseline channel {args.baseline} does not exist"
    try:
        frame, _ = read_channel(
            args.baseline,
            "baseline",
            target=args.target,
            categorical=categorical,
            features=features,
            labelled=False,
        )
    except EmptyChannelError as exc:
        return None, str(exc)
    if len(frame) < args.baseline_min_rows:
        return None, (
            f"baseline channel {args.baseline}: {len(frame)} rows, "
            f"fewer than --baseline-min-rows {args.baseline_min_rows}"
        )
    return frame, f"baseline channel {args.baseline}"


# --------------------------------------------------------------------------- model


def build_pipeline(
    features: Sequence[str], categorical: Sequence[str], args: argparse.Namespace
) -> Pipeline:
    """Preprocessing + gradient boosting in one Pipeline, so model.joblib carries both."""
    numeric = [f for f in features if f not in categorical]
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            # Unseen categories at serving time encode as all zeros instead of failing.
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        # Gradient boosting handles NaN natively; numeric columns pass straight through.
        transformers.append(("numeric", "passthrough", numeric))
    if categorical:
        transformers.append(("categorical", categories, list(categorical)))
    classifier = HistGradientBoostingClassifier(
        learning_rate=args.learning_rate,
        max_iter=args.max_iter,
        max_leaf_nodes=args.max_leaf_nodes,
        min_samples_leaf=args.min_samples_leaf,
        l2_regularization=args.l2_regularization,
        early_stopping=args.early_stopping,
        n_iter_no_change=20,
        validation_fraction=0.1,
        random_state=args.seed,
    )
    return Pipeline(
        [("preprocess", ColumnTransformer(transformers, remainder="drop")), ("model", classifier)]
    )


def validation_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Model Monitor-named metrics, computed by the same code as the quality check."""
    from driftloop.quality import classification_metrics

    metrics = {k: float(v) for k, v in classification_metrics(y, score, threshold).items()}
    both = len(np.unique(y)) == 2
    metrics["log_loss"] = float(log_loss(y, score, labels=[0, 1])) if both else float("nan")
    metrics["brier"] = float(brier_score_loss(y, score))
    return metrics


def write_baseline(
    model_dir: Path,
    frame: pd.DataFrame,
    schema: dict[str, Any],
    scores: np.ndarray,
    metrics: dict[str, float],
    n_bins: int | None,
    source: dict[str, Any] | None = None,
) -> None:
    """baseline.json (driftloop profile) and its Model Monitor statistics/constraints.

    `source` (which data was profiled) goes into baseline.json as a top-level field,
    which DatasetProfile.from_dict ignores: the profile's schema and version are unchanged.
    """
    import orjson

    from driftloop.profile import (
        build_baseline,
        to_model_monitor_constraints,
        to_model_monitor_statistics,
    )
    from driftloop.schema import Schema

    kwargs: dict[str, Any] = {"predictions": scores, "metrics": metrics}
    if n_bins is not None:
        kwargs["n_bins"] = n_bins
    profile = build_baseline(frame, Schema.from_dict(schema), **kwargs)
    document = profile.to_dict()
    if source is not None:
        document["source"] = source
    (model_dir / "baseline.json").write_bytes(orjson.dumps(document))
    statistics = to_model_monitor_statistics(profile)
    (model_dir / "statistics.json").write_text(json.dumps(statistics, indent=1))
    constraints = to_model_monitor_constraints(profile)
    (model_dir / "constraints.json").write_text(json.dumps(constraints, indent=1))


def copy_serving_code(model_dir: Path) -> None:
    """Put inference.py under model_dir/code: SageMaker tars SM_MODEL_DIR as it is."""
    source = Path(__file__).resolve().parent / "inference.py"
    if not source.is_file():
        raise TrainingError(f"{source}: inference.py must ship next to train.py")
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, model_dir / "code" / "inference.py")


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if np.isfinite(v) else None) for k, v in metrics.items()}


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fit, evaluate on validation, write every artefact; returns evaluation.json's content."""
    categorical = list(args.categorical)
    train_frame, features = read_channel(
        args.train, "train", target=args.target, categorical=categorical, features=args.features
    )
    if args.validation is not None:
        val_frame, _ = read_channel(
            args.validation,
            "validation",
            target=args.target,
            categorical=categorical,
            features=features,
        )
    else:
        # No validation channel: hold out a seeded 20% of train.
        rng = np.random.default_rng(args.seed)
        is_val = rng.random(len(train_frame)) < 0.2
        if is_val.all() or not is_val.any():
            raise TrainingError(f"train channel {args.train}: too few rows to split off validation")
        val_frame = train_frame[is_val].reset_index(drop=True)
        train_frame = train_frame[~is_val].reset_index(drop=True)
    if train_frame[args.target].nunique() < 2:
        raise TrainingError(f"train channel {args.train}: target {args.target!r} has one class")

    pipeline = build_pipeline(features, categorical, args)
    pipeline.fit(train_frame[features], train_frame[args.target])

    val_scores = pipeline.predict_proba(val_frame[features])[:, 1]
    metrics = validation_metrics(val_frame[args.target].to_numpy(), val_scores, args.threshold)
    train_scores = pipeline.predict_proba(train_frame[features])[:, 1]
    train_auc = validation_metrics(
        train_frame[args.target].to_numpy(), train_scores, args.threshold
    )["auc"]
    # The drift check's reference: the traffic this model is to serve when the baseline
    # channel has enough of it, else the training set (validation metrics either way).
    baseline_frame, baseline_note = read_baseline(args, features, categorical)
    if baseline_frame is not None:
        profiled = baseline_frame[features]
        profiled_scores = pipeline.predict_proba(profiled)[:, 1]
    else:
        profiled, profiled_scores = train_frame[features], train_scores
    source = {
        "channel": "baseline" if baseline_frame is not None else "train",
        "n_rows": len(profiled),
        "min_rows": args.baseline_min_rows,
        "note": baseline_note,
    }

    schema = {
        "features": features,
        "categorical": [f for f in features if f in categorical],
        "target": args.target,
        "problem": "binary",
    }
    args.model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, args.model_dir / "model.joblib")
    copy_serving_code(args.model_dir)
    (args.model_dir / "schema.json").write_text(
        json.dumps({**schema, "threshold": args.threshold}, indent=2)
    )
    evaluation: dict[str, Any] = {
        "metrics": _finite(metrics),
        "train_auc": train_auc,
        "n_train": len(train_frame),
        "n_validation": len(val_frame),
        "positive_rate_train": float(train_frame[args.target].mean()),
        "hyperparameters": {
            "learning_rate": args.learning_rate,
            "max_iter": args.max_iter,
            "max_leaf_nodes": args.max_leaf_nodes,
            "min_samples_leaf": args.min_samples_leaf,
            "l2_regularization": args.l2_regularization,
            "early_stopping": args.early_stopping,
            "seed": args.seed,
            "threshold": args.threshold,
        },
        "n_iter": int(pipeline.named_steps["model"].n_iter_),
        "baseline": source,
    }
    (args.model_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    write_baseline(
        args.model_dir,
        profiled,
        schema,
        profiled_scores,
        {k: v for k, v in metrics.items() if np.isfinite(v)},
        args.baseline_bins,
        source,
    )
    args.output_data_dir.mkdir(parents=True, exist_ok=True)
    (args.output_data_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2))

    print(f"train:auc={train_auc:.6f};")
    for name in PRINTED_METRICS:
        value = metrics.get(name, float("nan"))
        print(f"validation:{name}={value:.6f};")
    print(
        f"trained on {len(train_frame)} rows ({len(features)} features), "
        f"validated on {len(val_frame)}; baseline from the {source['channel']} channel "
        f"({len(profiled)} rows; {baseline_note}); model in {args.model_dir}"
    )
    return evaluation


def _write_failure(message: str) -> None:
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    if output_dir:
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "failure").write_text(message + "\n")
        except OSError:
            pass  # the message is on stderr anyway


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except TrainingError as exc:
        message = f"training failed: {exc}"
        print(message, file=sys.stderr)
        _write_failure(message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
