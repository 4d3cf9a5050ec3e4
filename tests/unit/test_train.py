"""train.py in script mode: SM_* paths, kebab-case hyperparameters, artefacts, loud failures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from joblib import load as joblib_load
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from driftloop.profile import DatasetProfile, NumericProfile
from training import inference, train
from training.datagen import CATEGORICAL_FEATURES, FEATURES, TARGET, write_dataset

# One worker runs this module, so its module-scoped model is built once.
pytestmark = pytest.mark.xdist_group("ml-train")

# Measured on 2100 training rows of training.datagen data: holdout AUC 0.79-0.81 across seeds.
AUC_FLOOR = 0.76
METRIC_LINE = re.compile(r"^validation:auc=([0-9.]+);$", re.MULTILINE)


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    # HistGradientBoosting's OpenMP threads spin against the other test worker on a
    # 2-core machine (10x slower); one thread is faster for these small fits.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dataset(tmp_path_factory.mktemp("data"), rows=3000, seed=31)


@pytest.fixture(scope="module")
def trained(
    data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict, str]:  # type: ignore[type-arg]
    # Given the datagen splits in train and validation channels (folders, as SageMaker mounts them)
    root = tmp_path_factory.mktemp("job")
    for channel in ("train", "validation"):
        (root / channel).mkdir()
        (root / channel / f"{channel}.csv").write_bytes(data[channel].read_bytes())
    argv = [
        "--train", str(root / "train"),
        "--validation", str(root / "validation"),
        "--model-dir", str(root / "model"),
        "--output-data-dir", str(root / "output"),
        "--max-iter", "150",
        "--seed", "3",
    ]  # fmt: skip
    # When train.py's main runs (stdout captured by hand: module-scoped fixture)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main(argv) == 0
    evaluation = json.loads((root / "model" / "evaluation.json").read_text())
    return root, evaluation, out.getvalue()


def test_parse_args_reads_sm_environment_and_kebab_case_hyperparameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the variables the SageMaker container sets
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation")
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    # When hyperparameters arrive as `--key value` strings
    args = train.parse_args(
        ["--learning-rate", "0.2", "--max-iter", "7", "--early-stopping", "False",
         "--categorical", "purpose, region", "--features", "age,purpose,region"]
    )  # fmt: skip
    # Then paths come from the environment and values are typed
    assert args.model_dir == Path("/opt/ml/model")
    assert args.train == Path("/opt/ml/input/data/train")
    assert args.validation == Path("/opt/ml/input/data/validation")
    assert args.output_data_dir == Path("/opt/ml/output/data")
    assert (args.learning_rate, args.max_iter, args.early_stopping) == (0.2, 7, False)
    assert args.categorical == ["purpose", "region"]
    assert args.features == ["age", "purpose", "region"]


def test_parse_args_defaults_match_the_demo_data(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SM_MODEL_DIR", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_OUTPUT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    args = train.parse_args([])
    assert args.validation is None and args.model_dir == Path("model")
    assert args.categorical == list(CATEGORICAL_FEATURES) and args.target == TARGET
    assert args.features == list(FEATURES)
    assert train.parse_args(["--features", "auto"]).features is None
    with pytest.raises(SystemExit):
        train.parse_args(["--early-stopping", "maybe"])
    with pytest.raises(SystemExit):
        train.parse_args(["--threshold", "1.5"])


def test_training_reaches_the_auc_floor_on_the_holdout(
    trained: tuple[Path, dict, str],  # type: ignore[type-arg]
    data: dict[str, Path],
) -> None:
    # When the saved model is loaded through the serving hooks and scores the holdout
    root, evaluation, _ = trained
    model = inference.model_fn(str(root / "model"))
    holdout = pd.read_csv(data["holdout"])
    body = "\n".join(
        ",".join(map(str, row)) for row in holdout[list(FEATURES)].itertuples(index=False)
    )
    prediction = inference.predict_fn(inference.input_fn(body, "text/csv"), model)
    # Then the holdout AUC clears the floor and validation agrees with it
    holdout_auc = roc_auc_score(holdout[TARGET], prediction.scores)
    assert holdout_auc >= AUC_FLOOR
    assert evaluation["metrics"]["auc"] >= AUC_FLOOR
    assert abs(evaluation["metrics"]["auc"] - holdout_auc) < 0.06
    assert evaluation["n_train"] == 2100 and evaluation["n_validation"] == 450


def test_metrics_are_printed_for_sagemaker_metric_definitions(
    trained: tuple[Path, dict, str],  # type: ignore[type-arg]
) -> None:
    _, evaluation, stdout = trained
    match = METRIC_LINE.search(stdout)
    assert match is not None
    assert float(match.group(1)) == pytest.approx(evaluation["metrics"]["auc"], abs=1e-6)
    for name in train.PRINTED_METRICS:
        assert re.search(rf"^validation:{name}=[0-9.]+;$", stdout, re.MULTILINE)
    assert re.search(r"^train:auc=[0-9.]+;$", stdout, re.MULTILINE)


def test_model_dir_holds_every_artefact_and_the_baseline_profiles_training_data(
    trained: tuple[Path, dict, str],  # type: ignore[type-arg]
) -> None:
    root, evaluation, _ = trained
    model_dir = root / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert names == {
        "model.joblib", "schema.json", "evaluation.json", "baseline.json",
        "statistics.json", "constraints.json", "code",
    }  # fmt: skip
    # The serving hooks ride along, byte for byte
    assert (model_dir / "code" / "inference.py").read_bytes() == Path(
        inference.__file__
    ).read_bytes()
    # The baseline profiles the 2100 training rows, with scores and the validation metrics
    baseline = DatasetProfile.load(model_dir / "baseline.json")
    assert baseline.n_rows == 2100
    assert baseline.schema.features == FEATURES and baseline.schema.target == TARGET
    assert baseline.schema.categorical == frozenset(CATEGORICAL_FEATURES)
    assert isinstance(baseline.predictions, NumericProfile) and baseline.predictions.n == 2100
    assert baseline.metrics["auc"] == pytest.approx(evaluation["metrics"]["auc"])
    # Model Monitor files name every feature
    stats = json.loads((model_dir / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 2100
    assert {f["name"] for f in stats["features"]} >= set(FEATURES)
    constraints = json.loads((model_dir / "constraints.json").read_text())
    assert {f["name"] for f in constraints["features"]} >= set(FEATURES)
    # And the output data dir gets the evaluation too (output.tar.gz in SageMaker)
    assert json.loads((root / "output" / "evaluation.json").read_text()) == evaluation


def test_same_seed_same_model(data: dict[str, Path], tmp_path: Path) -> None:
    scores = []
    for run in ("a", "b"):
        argv = ["--train", str(data["train"]), "--model-dir", str(tmp_path / run),
                "--output-data-dir", str(tmp_path / f"{run}-out"), "--max-iter", "40"]  # fmt: skip
        train.main(argv)
        scores.append(json.loads((tmp_path / run / "evaluation.json").read_text())["metrics"])
    assert scores[0] == scores[1]


def _fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert train.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, "one line, no traceback"
    return err


def test_empty_channel_fails_loudly_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty train channel, inside a container-like output dir
    empty = tmp_path / "train"
    empty.mkdir()
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path / "output"))
    # Then the job exits 1 with one line naming the channel path
    err = _fail(["--train", str(empty), "--model-dir", str(tmp_path / "m")], capsys)
    assert f"train channel {empty}: empty channel" in err
    # And SageMaker's failure file carries the same reason
    assert (tmp_path / "output" / "failure").read_text().strip() == err
    assert not (tmp_path / "m" / "model.joblib").exists()


def test_channel_with_only_a_header_has_no_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part-0.csv").write_text(",".join([*FEATURES, TARGET]) + "\n")
    (tmp_path / "train" / "part-1.csv").write_text("")
    err = _fail(["--train", str(tmp_path / "train"), "--model-dir", str(tmp_path / "m")], capsys)
    assert f"train channel {tmp_path / 'train'}: no rows" in err


def test_missing_column_fails_naming_the_file_and_the_column(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a validation file without credit_score
    frame = pd.read_csv(data["validation"]).drop(columns=["credit_score"])
    bad = tmp_path / "validation.csv"
    frame.to_csv(bad, index=False)
    argv = ["--train", str(data["train"]), "--validation", str(bad),
            "--model-dir", str(tmp_path / "m")]  # fmt: skip
    err = _fail(argv, capsys)
    assert f"{bad}: missing column 'credit_score'" in err
    # And a missing target or categorical column is named the same way
    frame = pd.read_csv(data["validation"]).drop(columns=[TARGET, "region"])
    frame.to_csv(bad, index=False)
    err = _fail(["--train", str(bad), "--model-dir", str(tmp_path / "m")], capsys)
    assert f"{bad}: missing column 'region'" in err


def test_missing_column_in_the_train_channel_is_caught_by_the_default_features(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(data["train"]).drop(columns=["num_delinquencies"])
    bad = tmp_path / "train.csv"
    frame.to_csv(bad, index=False)
    err = _fail(["--train", str(bad), "--model-dir", str(tmp_path / "m")], capsys)
    assert f"{bad}: missing column 'num_delinquencies'" in err
    # With --features auto the header decides, and the model learns without it
    argv = ["--train", str(bad), "--features", "auto", "--model-dir", str(tmp_path / "m"),
            "--output-data-dir", str(tmp_path / "o"), "--max-iter", "10"]  # fmt: skip
    assert train.main(argv) == 0
    schema = json.loads((tmp_path / "m" / "schema.json").read_text())
    assert schema["features"] == [f for f in FEATURES if f != "num_delinquencies"]


def test_bad_values_fail_naming_file_line_and_column(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(data["train"]).head(50).astype({"income": object})
    frame.loc[9, "income"] = "lots"
    bad = tmp_path / "train.csv"
    frame.to_csv(bad, index=False)
    err = _fail(["--train", str(bad), "--model-dir", str(tmp_path / "m")], capsys)
    # Row 9 is line 11 (header + 1-based)
    assert f"{bad}:11: column 'income' is numeric but holds 'lots'" in err

    frame = pd.read_csv(data["train"]).head(50)
    frame.loc[3, TARGET] = 2
    frame.to_csv(bad, index=False)
    assert "must be 0/1" in _fail(["--train", str(bad), "--model-dir", str(tmp_path / "m")], capsys)


def test_no_validation_channel_splits_train_with_the_seed(
    data: dict[str, Path], tmp_path: Path
) -> None:
    argv = ["--train", str(data["train"]), "--model-dir", str(tmp_path / "m"),
            "--output-data-dir", str(tmp_path / "o"), "--max-iter", "30"]  # fmt: skip
    assert train.main(argv) == 0
    evaluation = json.loads((tmp_path / "m" / "evaluation.json").read_text())
    assert evaluation["n_train"] + evaluation["n_validation"] == 2100
    assert 0.15 < evaluation["n_validation"] / 2100 < 0.25


def test_missing_categories_in_training_data_are_learned_not_fatal(
    data: dict[str, Path], tmp_path: Path
) -> None:
    frame = pd.read_csv(data["train"]).head(800)
    frame.loc[frame.index % 7 == 0, "purpose"] = np.nan
    frame.loc[frame.index % 11 == 0, "income"] = np.nan
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    argv = ["--train", str(path), "--model-dir", str(tmp_path / "m"),
            "--output-data-dir", str(tmp_path / "o"), "--max-iter", "20"]  # fmt: skip
    assert train.main(argv) == 0
    baseline = DatasetProfile.load(tmp_path / "m" / "baseline.json")
    assert baseline.features["purpose"].n_missing > 0  # type: ignore[union-attr]


def _baseline_argv(data: dict[str, Path], root: Path, *extra: str) -> list[str]:
    return ["--train", str(data["train"]), "--validation", str(data["validation"]),
            "--model-dir", str(root / "m"), "--output-data-dir", str(root / "o"),
            "--max-iter", "30", *extra]  # fmt: skip


def test_baseline_channel_is_profiled_instead_of_the_training_set(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given recent traffic in the baseline channel: 600 unlabelled rows with income halved
    traffic = pd.read_csv(data["train"]).head(600).drop(columns=[TARGET])
    traffic["income"] = traffic["income"] * 0.5
    (tmp_path / "baseline").mkdir()
    traffic.to_csv(tmp_path / "baseline" / "baseline.csv", index=False)
    monkeypatch.setenv("SM_CHANNEL_BASELINE", str(tmp_path / "baseline"))
    # When the same job runs with the channel (mounted through SM_CHANNEL_BASELINE) and without
    assert train.main(_baseline_argv(data, tmp_path / "with")) == 0
    monkeypatch.delenv("SM_CHANNEL_BASELINE")
    assert train.main(_baseline_argv(data, tmp_path / "without")) == 0
    with_, without = (
        DatasetProfile.load(tmp_path / run / "m" / "baseline.json") for run in ("with", "without")
    )
    # Then the profile is the channel's rows: their count, their (shifted) income mean
    assert (with_.n_rows, without.n_rows) == (600, 2100)
    income = with_.features["income"]
    assert isinstance(income, NumericProfile)
    assert income.mean == pytest.approx(float(traffic["income"].mean()))
    assert income.mean < 0.7 * without.features["income"].mean  # type: ignore[union-attr]
    # And the predictions are the new model's scores on those rows
    model = joblib_load(tmp_path / "with" / "m" / "model.joblib")
    scores = model.predict_proba(traffic[list(FEATURES)])[:, 1]
    assert isinstance(with_.predictions, NumericProfile) and with_.predictions.n == 600
    assert with_.predictions.mean == pytest.approx(float(scores.mean()))
    # And the validation metrics are the training job's, unchanged by the channel
    evaluations = [
        json.loads((tmp_path / run / "m" / "evaluation.json").read_text())
        for run in ("with", "without")
    ]
    assert evaluations[0]["metrics"] == evaluations[1]["metrics"]
    assert with_.metrics == without.metrics
    # And baseline.json says which data it profiled (still a valid version-1 profile)
    sources = [
        json.loads((tmp_path / run / "m" / "baseline.json").read_text())["source"]
        for run in ("with", "without")
    ]
    assert sources[0]["channel"] == "baseline" and sources[0]["n_rows"] == 600
    assert sources[1] == {
        "channel": "train", "n_rows": 2100, "min_rows": 500, "note": "no baseline channel",
    }  # fmt: skip
    assert evaluations[0]["baseline"] == sources[0]


def test_a_small_or_empty_baseline_channel_falls_back_to_the_training_set(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a baseline channel with 499 rows (one short of the minimum), one with a header only
    small, empty = tmp_path / "small", tmp_path / "empty"
    small.mkdir()
    empty.mkdir()
    pd.read_csv(data["train"]).head(499).to_csv(small / "baseline.csv", index=False)
    (empty / "baseline.csv").write_text(",".join(FEATURES) + "\n")
    for channel in (small, empty):
        # When the job runs with it
        argv = _baseline_argv(data, tmp_path / channel.name, "--baseline", str(channel))
        assert train.main(argv) == 0
        document = json.loads((tmp_path / channel.name / "m" / "baseline.json").read_text())
        # Then the training set is profiled, and baseline.json says why
        assert document["n_rows"] == 2100
        assert document["source"]["channel"] == "train"
    notes = [
        json.loads((tmp_path / c / "m" / "baseline.json").read_text())["source"]["note"]
        for c in ("small", "empty")
    ]
    assert notes[0] == f"baseline channel {small}: 499 rows, fewer than --baseline-min-rows 500"
    assert notes[1] == f"baseline channel {empty}: no rows"
    # And a lower minimum takes the small channel
    argv = _baseline_argv(data, tmp_path / "low", "--baseline", str(small),
                          "--baseline-min-rows", "100")  # fmt: skip
    assert train.main(argv) == 0
    assert DatasetProfile.load(tmp_path / "low" / "m" / "baseline.json").n_rows == 499
    capsys.readouterr()


def test_bad_values_in_the_baseline_channel_fail_naming_file_line_and_column(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a baseline file (no label column) with a word in a numeric column
    frame = pd.read_csv(data["train"]).head(600).drop(columns=[TARGET]).astype({"age": object})
    frame.loc[4, "age"] = "old"
    bad = tmp_path / "baseline.csv"
    frame.to_csv(bad, index=False)
    # Then the job fails with one line naming the file, the line and the column
    err = _fail(_baseline_argv(data, tmp_path, "--baseline", str(bad)), capsys)
    assert f"{bad}:6: column 'age' is numeric but holds 'old'" in err
