"""Champion vs challenger on the same holdout: the evidence the retraining gate decides on.

Runs as a SageMaker Processing job script (the prebuilt scikit-learn image):

    inputs   /opt/ml/processing/input/champion/    model.tar.gz (or an extracted model dir);
                                                   empty or absent for the first model
             /opt/ml/processing/input/challenger/  model.tar.gz
             /opt/ml/processing/input/holdout/     *.csv with a header and the target
    output   /opt/ml/processing/output/evaluation/evaluation.json

Every path can be overridden by a flag, so the local runtime and tests call the same
script. `compare_models` is the function behind it. Each model scores the holdout with
its own schema.json (feature order, target, label threshold).

evaluation.json:

    {"metric": "auc", "higher_is_better": true, "n_holdout": 1500,
     "champion": {"auc": .., "accuracy": .., ...} | null,
     "challenger": {...},
     "margin": challenger's improvement (challenger - champion when higher is better) | null,
     "winner": "challenger" | "champion"}

Imports only numpy, pandas, joblib and scikit-learn (no driftloop in a processing image).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

# The local runtime (driftloop.local.training) runs this script under a remapped tree and
# says where with DRIFTLOOP_PROCESSING_ROOT; in a SageMaker Processing job it is unset.
PROCESSING_ROOT_ENV = "DRIFTLOOP_PROCESSING_ROOT"
LOWER_IS_BETTER = frozenset({"log_loss", "brier"})
METRICS = ("auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier")


class EvaluationError(Exception):
    """A missing model or unusable holdout: one line naming the path (and column)."""


def _safe_extract(tar_path: Path, dest: Path) -> None:
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not target.is_relative_to(dest.resolve()) or member.issym() or member.islnk():
                raise EvaluationError(f"{tar_path}: unsafe member {member.name!r}")
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: also drops special files
            tar.extractall(dest, filter="data")
        else:  # members checked above
            tar.extractall(dest)


def _model_dir(source: Path, scratch: Path) -> Path | None:
    """A folder holding model.joblib, from a dir, a dir holding model.tar.gz, or the tarball."""
    if not source.exists():
        return None
    if source.is_file():
        if not source.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise EvaluationError(f"{source}: not a model.tar.gz")
        dest = Path(tempfile.mkdtemp(dir=scratch))
        _safe_extract(source, dest)
        return _model_dir(dest, scratch)
    if (source / "model.joblib").is_file():
        return source
    tarballs = sorted(source.glob("*.tar.gz"))
    if len(tarballs) > 1:
        raise EvaluationError(f"{source}: more than one model tarball ({tarballs[0].name}, ...)")
    if tarballs:
        return _model_dir(tarballs[0], scratch)
    if any(source.iterdir()):
        raise EvaluationError(f"{source}: no model.joblib or model.tar.gz")
    return None  # an empty input folder: no model


def _load(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    pipeline = joblib.load(model_dir / "model.joblib")
    schema_path = model_dir / "schema.json"
    if schema_path.is_file():
        schema = json.loads(schema_path.read_text())
    else:
        schema = {"features": [str(f) for f in pipeline.feature_names_in_], "categorical": []}
    return pipeline, schema


def read_holdout(path: Path) -> pd.DataFrame:
    files = [path] if path.is_file() else sorted(path.rglob("*.csv")) if path.is_dir() else []
    if not files:
        raise EvaluationError(f"holdout {path}: no CSV files")
    frames = [pd.read_csv(f, low_memory=False) for f in files if f.stat().st_size > 0]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise EvaluationError(f"holdout {path}: no rows")
    return frame


def score(pipeline: Any, schema: dict[str, Any], holdout: pd.DataFrame, where: str) -> np.ndarray:
    features = [str(f) for f in schema["features"]]
    missing = [f for f in features if f not in holdout.columns]
    if missing:
        raise EvaluationError(f"{where}: missing column {missing[0]!r} needed by the model")
    frame = holdout[features].copy()
    categorical = set(schema.get("categorical", ()))
    for name in features:
        if name in categorical:
            col = frame[name]
            frame[name] = col.astype(str).where(col.notna(), np.nan).astype(object)
        else:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return np.asarray(pipeline.predict_proba(frame)[:, 1], dtype=np.float64)


def metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | None]:
    labels = (scores >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    out = {
        "auc": float(roc_auc_score(y, scores)) if both else math.nan,
        "accuracy": float(accuracy_score(y, labels)),
        "precision": float(precision_score(y, labels, zero_division=0)),
        "recall": float(recall_score(y, labels, zero_division=0)),
        "f1": float(f1_score(y, labels, zero_division=0)),
        "log_loss": float(log_loss(y, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(y, scores)),
    }
    return {k: (v if math.isfinite(v) else None) for k, v in out.items()}


def _labels(holdout: pd.DataFrame, target: str, where: str) -> np.ndarray:
    if target not in holdout.columns:
        raise EvaluationError(f"{where}: missing target column {target!r}")
    y = pd.to_numeric(holdout[target], errors="coerce")
    if y.isna().any() or not set(y.unique()) <= {0, 1}:
        raise EvaluationError(f"{where}: target {target!r} must be 0/1 on every row")
    return y.to_numpy(dtype=np.int64)


def compare_models(
    champion: str | Path | None,
    challenger: str | Path,
    holdout_csv: str | Path,
    metric: str = "auc",
    *,
    target: str | None = None,
) -> dict[str, Any]:
    """Score both models on the holdout; the challenger wins ties only when no champion exists."""
    if metric not in METRICS:
        raise EvaluationError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    holdout_path = Path(holdout_csv)
    holdout = read_holdout(holdout_path)
    with tempfile.TemporaryDirectory() as scratch:
        challenger_dir = _model_dir(Path(challenger), Path(scratch))
        if challenger_dir is None:
            raise EvaluationError(f"challenger {challenger}: no model found")
        champion_dir = None if champion is None else _model_dir(Path(champion), Path(scratch))
        results: dict[str, dict[str, float | None] | None] = {"champion": None}
        for role, model_dir in (("challenger", challenger_dir), ("champion", champion_dir)):
            if model_dir is None:
                continue
            pipeline, schema = _load(model_dir)
            name = target or schema.get("target") or "default"
            y = _labels(holdout, str(name), f"holdout {holdout_path}")
            scores = score(pipeline, schema, holdout, f"holdout {holdout_path} ({role})")
            results[role] = metrics(y, scores, float(schema.get("threshold", 0.5)))
    higher = metric not in LOWER_IS_BETTER
    mine = results["challenger"][metric]  # type: ignore[index]
    theirs = None if results["champion"] is None else results["champion"][metric]
    margin = None
    if mine is not None and theirs is not None:
        margin = mine - theirs if higher else theirs - mine
    if results["champion"] is None:
        winner = "challenger"  # the first model has nothing to beat
    else:
        winner = "challenger" if margin is not None and margin > 0 else "champion"
    return {
        "metric": metric,
        "higher_is_better": higher,
        "n_holdout": len(holdout),
        "champion": results["champion"],
        "challenger": results["challenger"],
        "margin": margin,
        "winner": winner,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    processing = Path(os.environ.get(PROCESSING_ROOT_ENV, "/opt/ml/processing"))
    p = argparse.ArgumentParser(description="Score champion and challenger on one holdout.")
    p.add_argument("--champion", type=Path, default=processing / "input" / "champion")
    p.add_argument("--challenger", type=Path, default=processing / "input" / "challenger")
    p.add_argument("--holdout", type=Path, default=processing / "input" / "holdout")
    p.add_argument("--output-dir", type=Path, default=processing / "output" / "evaluation")
    p.add_argument("--metric", default="auc", choices=METRICS)
    p.add_argument("--target", default=None, help="label column (default: the model's schema)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = compare_models(
            args.champion, args.challenger, args.holdout, args.metric, target=args.target
        )
    except (EvaluationError, OSError, ValueError) as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    champ = result["champion"][args.metric] if result["champion"] else None
    print(f"challenger:{args.metric}={result['challenger'][args.metric]};")
    if champ is not None:
        print(f"champion:{args.metric}={champ};")
    print(f"winner={result['winner']} margin={result['margin']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
