"""evaluate.py: champion and challenger scored on one holdout, as the gate needs it."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from training import evaluate, train
from training.datagen import TARGET, write_dataset

# One worker runs this module, so its module-scoped model is built once.
pytestmark = pytest.mark.xdist_group("ml-evaluate")


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _train(data: dict[str, Path], out: Path) -> Path:
    argv = ["--train", str(data["train"]), "--validation", str(data["validation"]),
            "--model-dir", str(out), "--output-data-dir", str(out.parent / f"{out.name}-o"),
            "--max-iter", "60", "--learning-rate", "0.15"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Given a champion trained before a rate shock and a challenger trained after it
    root = tmp_path_factory.mktemp("eval")
    old = write_dataset(root / "old", rows=2500, seed=51)
    new = write_dataset(root / "new", rows=2500, seed=52, scenario="concept_drift")
    champion = _train(old, root / "champion")
    challenger = _train(new, root / "challenger")
    tar = root / "challenger-tar" / "model.tar.gz"
    tar.parent.mkdir()
    with tarfile.open(tar, "w:gz") as t:
        for path in sorted(challenger.iterdir()):
            t.add(path, arcname=path.name)
    return {
        "champion": champion,
        "challenger": challenger,
        "challenger_tar": tar,
        "holdout_new": new["holdout"],
        "holdout_old": old["holdout"],
    }


def test_the_model_of_the_new_world_wins_on_a_new_world_holdout(world: dict[str, Path]) -> None:
    # When both score the post-shock holdout (challenger given as a tarball)
    result = evaluate.compare_models(
        world["champion"], world["challenger_tar"], world["holdout_new"]
    )
    # Then the challenger wins by a clear AUC margin, computed as challenger - champion
    assert result["winner"] == "challenger"
    assert result["metric"] == "auc" and result["higher_is_better"] is True
    assert result["n_holdout"] == 375
    margin = result["challenger"]["auc"] - result["champion"]["auc"]
    assert result["margin"] == pytest.approx(margin)
    assert margin > 0.05
    assert set(result["champion"]) == set(evaluate.METRICS)


def test_the_champion_keeps_its_place_on_its_own_world(world: dict[str, Path]) -> None:
    result = evaluate.compare_models(
        world["champion"], world["challenger"], world["holdout_old"], metric="log_loss"
    )
    # log loss is lower-is-better: margin is champion - challenger, negative here
    assert result["higher_is_better"] is False
    assert result["margin"] == pytest.approx(
        result["champion"]["log_loss"] - result["challenger"]["log_loss"]
    )
    assert result["margin"] < 0 and result["winner"] == "champion"


def test_without_a_champion_the_challenger_wins(world: dict[str, Path], tmp_path: Path) -> None:
    for champion in (None, tmp_path / "absent", tmp_path):  # None, missing, empty folder
        result = evaluate.compare_models(champion, world["challenger"], world["holdout_new"])
        assert result["champion"] is None and result["margin"] is None
        assert result["winner"] == "challenger"


def test_script_mode_reads_processing_folders_and_writes_evaluation_json(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the processing layout (remapped as the local runtime does)
    root = tmp_path / "processing"
    (root / "input" / "champion").mkdir(parents=True)
    (root / "input" / "holdout").mkdir(parents=True)
    (root / "input" / "challenger").mkdir(parents=True)
    champion_tar = root / "input" / "champion" / "model.tar.gz"
    with tarfile.open(champion_tar, "w:gz") as t:
        for path in sorted(world["champion"].iterdir()):
            t.add(path, arcname=path.name)
    challenger_tar = root / "input" / "challenger" / "model.tar.gz"
    challenger_tar.write_bytes(world["challenger_tar"].read_bytes())
    holdout = root / "input" / "holdout" / "part-0.csv"
    holdout.write_bytes(world["holdout_new"].read_bytes())
    monkeypatch.setenv("DRIFTLOOP_PROCESSING_ROOT", str(root))
    # When the script runs with its defaults
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert evaluate.main([]) == 0
    # Then evaluation.json is where the processing output is collected
    result = json.loads((root / "output" / "evaluation" / "evaluation.json").read_text())
    assert result["winner"] == "challenger"
    assert f"challenger:auc={result['challenger']['auc']};" in out.getvalue()


def test_bad_inputs_fail_with_one_line_naming_the_path(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(world["holdout_new"]).drop(columns=["income"])
    bad = tmp_path / "holdout.csv"
    frame.to_csv(bad, index=False)
    argv = ["--champion", str(world["champion"]), "--challenger", str(world["challenger"]),
            "--holdout", str(bad), "--output-dir", str(tmp_path / "out")]  # fmt: skip
    assert evaluate.main(argv) == 1
    err = capsys.readouterr().err.strip()
    expected = f"holdout {bad} (challenger): missing column 'income' needed by the model"
    assert err == f"evaluation failed: {expected}"

    frame = pd.read_csv(world["holdout_new"]).drop(columns=[TARGET])
    frame.to_csv(bad, index=False)
    with pytest.raises(evaluate.EvaluationError, match="missing target column 'default'"):
        evaluate.compare_models(None, world["challenger"], bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(evaluate.EvaluationError, match="no CSV files"):
        evaluate.compare_models(None, world["challenger"], tmp_path / "empty")
    with pytest.raises(evaluate.EvaluationError, match="challenger .*: no model found"):
        evaluate.compare_models(None, tmp_path / "nothing", world["holdout_new"])
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hi")
    with pytest.raises(evaluate.EvaluationError, match="no model.joblib or model.tar.gz"):
        evaluate.compare_models(junk, world["challenger"], world["holdout_new"])
    with pytest.raises(evaluate.EvaluationError, match="unknown metric"):
        evaluate.compare_models(None, world["challenger"], world["holdout_new"], metric="nope")


def test_a_tarball_that_escapes_its_folder_is_refused(
    world: dict[str, Path], tmp_path: Path
) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as t:
        t.add(world["challenger"] / "model.joblib", arcname="../model.joblib")
    with pytest.raises(evaluate.EvaluationError, match="unsafe member"):
        evaluate.compare_models(None, evil, world["holdout_new"])
