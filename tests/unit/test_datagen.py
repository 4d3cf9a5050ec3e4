"""The demo data generator: reproducible, and each scenario changes the world the way it says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from driftloop.schema import Schema
from training import datagen
from training.datagen import (
    CATEGORICAL_FEATURES,
    FEATURES,
    NEW_PURPOSE,
    TARGET,
    generate_timeline,
    training_set,
)


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    # HistGradientBoosting's OpenMP threads spin against the other test worker on a
    # 2-core machine (10x slower); one thread is faster for these small fits.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def test_same_seed_same_rows_and_other_seed_other_rows() -> None:
    # Given two timelines with the same seed and one with another
    a = generate_timeline(3, 200, seed=11, scenario="covariate_shift")
    b = generate_timeline(3, 200, seed=11, scenario="covariate_shift")
    c = generate_timeline(3, 200, seed=12, scenario="covariate_shift")
    # Then the same seed gives identical frames and another seed does not
    pd.testing.assert_frame_equal(a, b)
    assert not a[list(FEATURES)].equals(c[list(FEATURES)])
    pd.testing.assert_frame_equal(training_set(500, 3), training_set(500, 3))


def test_timeline_layout_times_and_label_delay() -> None:
    # When a 4-day timeline of 250 requests a day is generated
    tl = generate_timeline(4, 250, seed=1)
    # Then it has one row per request, unique ids, the features and the label
    assert len(tl) == 1000
    assert tl["record_id"].is_unique
    assert list(tl.columns[-len(FEATURES) - 1 :]) == [*FEATURES, TARGET]
    assert set(tl[TARGET].unique()) <= {0, 1}
    # And request times are sorted, inside their day, and UTC
    assert tl["request_time"].is_monotonic_increasing
    assert str(tl["request_time"].dt.tz) == "UTC"
    start = pd.Timestamp(datagen.DEFAULT_START)
    day_of_time = ((tl["request_time"] - start) // pd.Timedelta(days=1)).to_numpy()
    np.testing.assert_array_equal(day_of_time, tl["day"].to_numpy())
    # And labels arrive 1 to 3 days after the request
    delay = (tl["label_time"] - tl["request_time"]).dt.total_seconds() / 86400
    assert delay.min() >= 1.0 and delay.max() <= 3.0
    assert delay.std() > 0.3


def test_features_have_plausible_ranges_and_no_missing_values() -> None:
    frame = training_set(5000, seed=2)
    assert not frame.isna().any().any()
    assert frame["age"].between(18, 85).all()
    assert frame["credit_score"].between(300, 850).all()
    assert (frame["income"] > 0).all() and (frame["loan_amount"] >= 1000).all()
    assert 0.1 < frame[TARGET].mean() < 0.4
    for name in CATEGORICAL_FEATURES:
        assert frame[name].map(type).eq(str).all()
    assert NEW_PURPOSE not in set(frame["purpose"])


def test_covariate_shift_moves_income_and_credit_score_from_the_change_day() -> None:
    # Given a covariate-shift timeline changing on day 5 and a stable one
    shifted = generate_timeline(10, 1000, seed=3, scenario="covariate_shift", change_day=5)
    stable = generate_timeline(10, 1000, seed=3, scenario="stable", change_day=5)
    before, after = shifted[shifted["day"] < 5], shifted[shifted["day"] >= 5]
    # Then income and credit score drop after the change, and not in the stable world
    assert after["income"].median() < 0.8 * before["income"].median()
    assert before["credit_score"].mean() - after["credit_score"].mean() > 30
    s_before, s_after = stable[stable["day"] < 5], stable[stable["day"] >= 5]
    assert abs(s_before["credit_score"].mean() - s_after["credit_score"].mean()) < 5
    assert s_after["income"].median() > 0.95 * s_before["income"].median()


def test_new_category_appears_only_after_the_change_day() -> None:
    tl = generate_timeline(6, 1000, seed=4, scenario="new_category", change_day=3)
    before, after = tl[tl["day"] < 3], tl[tl["day"] >= 3]
    assert (before["purpose"] == NEW_PURPOSE).sum() == 0
    share = (after["purpose"] == NEW_PURPOSE).mean()
    assert 0.12 < share < 0.18


def _fit(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    pre = ColumnTransformer([("c", encode, list(CATEGORICAL_FEATURES))], remainder="passthrough")
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=8, random_state=0)
    return Pipeline([("pre", pre), ("model", model)]).fit(frame[list(FEATURES)], frame[TARGET])


def _auc(model, frame: pd.DataFrame) -> float:  # type: ignore[no-untyped-def]
    return float(roc_auc_score(frame[TARGET], model.predict_proba(frame[list(FEATURES)])[:, 1]))


def test_concept_drift_decays_the_old_model_and_retraining_recovers() -> None:
    # Given a model trained on the world before the change
    old = _fit(training_set(5000, seed=5))
    tl = generate_timeline(10, 1000, seed=6, scenario="concept_drift", change_day=5)
    before, after = tl[tl["day"] < 5], tl[tl["day"] >= 5]
    # When it scores requests before and after the change
    auc_before, auc_after = _auc(old, before), _auc(old, after)
    # Then its AUC decays clearly (measured: 0.80 -> 0.73) ...
    assert auc_before > 0.77
    assert auc_before - auc_after > 0.04
    # ... and a model trained on the new world does better on it (measured: 0.87)
    new = _fit(training_set(5000, seed=7, as_of_day=5, scenario="concept_drift", change_day=5))
    assert _auc(new, after) - auc_after > 0.08


def test_training_set_as_of_a_day_before_the_change_is_the_old_world() -> None:
    early = training_set(3000, seed=8, as_of_day=2, scenario="new_category", change_day=5)
    late = training_set(3000, seed=8, as_of_day=5, scenario="new_category", change_day=5)
    assert NEW_PURPOSE not in set(early["purpose"])
    assert NEW_PURPOSE in set(late["purpose"])


def test_bad_arguments_are_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'drifty'"):
        generate_timeline(2, 10, seed=1, scenario="drifty")
    with pytest.raises(ValueError, match="positive"):
        generate_timeline(0, 10, seed=1)
    with pytest.raises(ValueError, match="positive"):
        training_set(0, seed=1)


def test_cli_writes_the_three_splits_and_a_schema(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # When the CLI writes 1000 rows
    assert datagen.main(["--out", str(tmp_path), "--rows", "1000", "--seed", "3"]) == 0
    # Then train/validation/holdout hold 70/15/15% with the header in request order + target
    sizes = {}
    for name in ("train", "validation", "holdout"):
        frame = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(frame.columns) == [*FEATURES, TARGET]
        sizes[name] = len(frame)
    assert sizes == {"train": 700, "validation": 150, "holdout": 150}
    # And schema.json is a driftloop Schema of the same layout
    schema = Schema.from_dict(json.loads((tmp_path / "schema.json").read_text()))
    assert schema.features == FEATURES and schema.target == TARGET
    assert schema.categorical == frozenset(CATEGORICAL_FEATURES)
    assert "train:" in capsys.readouterr().out


def test_combine_merges_the_changes_of_several_scenarios() -> None:
    both = datagen.combine("covariate_shift", "concept_drift")
    assert both.credit_shift == datagen.SHIFTED["covariate_shift"].credit_shift
    assert both.dti_weight == datagen.SHIFTED["concept_drift"].dti_weight
    assert both.delinquency_weight == datagen.SHIFTED["concept_drift"].delinquency_weight
    assert both.new_purpose_share == 0.0
    assert datagen.combine() == datagen.STABLE
    rows = datagen.sample(np.random.default_rng(0), np.ones(2000, bool), both)
    assert rows["credit_score"].mean() < training_set(2000, seed=0)["credit_score"].mean() - 30
