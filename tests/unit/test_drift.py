"""The drift verdict: configuration, per-feature rules, dataset rule and the JSON report."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from driftloop import FeatureBatch, Schema
from driftloop.capture import encode_capture_record
from driftloop.drift import DriftConfig, check_sources, compare
from driftloop.errors import DriftloopError
from driftloop.profile import DatasetProfile, build_baseline, empty_profile, profile_batch

NUMERIC = ("a", "b", "c", "d")
SCHEMA = Schema(features=(*NUMERIC, "color"), categorical=frozenset({"color"}))
COLORS = np.array(["red", "green", "blue", "black"], dtype=object)
POP = np.array([0.5, 0.3, 0.15, 0.05])


def make_batch(
    rng: np.random.Generator,
    n: int,
    *,
    shift: float = 0.0,
    scale: float = 1.0,
    pop: np.ndarray = POP,
    pred_shift: float = 0.0,
) -> FeatureBatch:
    cols: dict[str, np.ndarray] = {
        "a": rng.normal(shift, scale, n),
        "b": rng.lognormal(0, 0.5, n),
        "c": rng.integers(0, 10, n).astype(np.float64),
        "d": rng.uniform(0, 1, n),
        "color": COLORS[rng.choice(4, n, p=pop)],
    }
    preds = np.clip(rng.beta(2, 5, n) + pred_shift, 0, 1)
    return FeatureBatch(columns=cols, n_rows=n, predictions=preds)


@pytest.fixture(scope="module")
def baseline() -> DatasetProfile:
    return build_baseline([make_batch(np.random.default_rng(0), 50_000)], SCHEMA)


def window(baseline: DatasetProfile, seed: int, n: int, **kw: object) -> DatasetProfile:
    return profile_batch(make_batch(np.random.default_rng(seed), n, **kw), baseline)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- config


def test_config_defaults_and_validation() -> None:
    c = DriftConfig()
    assert (c.fdr, c.numeric_threshold, c.categorical_threshold, c.min_rows) == (
        0.01,
        0.05,
        0.1,
        200,
    )
    with pytest.raises(DriftloopError, match=r"drift config: fdr must be in \(0, 1\)"):
        DriftConfig(fdr=0)
    with pytest.raises(DriftloopError, match="numeric_method must be one of"):
        DriftConfig(numeric_method="magic")


def test_config_from_dict_round_trip_and_errors() -> None:
    d = {"fdr": 0.05, "min_rows": 500, "critical_features": ["a"], "count_prediction_drift": True}
    c = DriftConfig.from_dict(d)
    assert (c.fdr, c.min_rows, c.critical_features, c.count_prediction_drift) == (
        0.05,
        500,
        ("a",),
        True,
    )
    assert DriftConfig.from_dict(c.to_dict()) == c
    assert DriftConfig.from_dict(None) == DriftConfig()
    with pytest.raises(DriftloopError, match=r"unknown setting\(s\) \['fdrr'\]"):
        DriftConfig.from_dict({"fdrr": 0.1})
    with pytest.raises(DriftloopError, match="min_rows: expected an integer"):
        DriftConfig.from_dict({"min_rows": 2.5})
    with pytest.raises(DriftloopError, match="fdr: expected a number"):
        DriftConfig.from_dict({"fdr": "0.1"})
    with pytest.raises(DriftloopError, match="DRIFT_CONFIG: drift_share must be in"):
        DriftConfig.from_dict({"drift_share": 2}, where="DRIFT_CONFIG")
    with pytest.raises(DriftloopError, match="expected a JSON object"):
        DriftConfig.from_dict([1, 2])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- verdicts


def test_same_distribution_does_not_drift(baseline: DatasetProfile) -> None:
    # Given a window from the baseline's distribution
    report = compare(baseline, window(baseline, 1, 5_000))
    # Then nothing drifts and the report says so
    assert report.status == "ok" and not report.dataset_drift
    assert report.drifted_features == [] and report.drift_share == 0.0
    assert report.reason == "no feature drifted (5 checked)"


def test_mean_shift_drifts_only_the_shifted_feature(baseline: DatasetProfile) -> None:
    # Given feature a shifted by 0.3 std
    report = compare(baseline, window(baseline, 2, 5_000, shift=0.3))
    # Then a drifts, with its effect size and significance, and nothing else does
    assert report.dataset_drift and report.drifted_features == ["a"]
    a = report.features["a"]
    assert a.method == "wasserstein" and a.score is not None
    assert a.score == pytest.approx(0.3, abs=0.05)
    assert a.p_value_adjusted <= 0.01 and a.reasons == ["distribution"]
    assert a.mean_shift == pytest.approx(0.3, abs=0.05)


def test_scale_change_drifts(baseline: DatasetProfile) -> None:
    report = compare(baseline, window(baseline, 3, 2_000, scale=1.3))
    assert report.drifted_features == ["a"]
    a = report.features["a"]
    assert a.score is not None and a.score > 0.15
    assert a.chi2_p_value is not None and a.chi2_p_value < 1e-6


def test_large_windows_do_not_flag_trivial_differences(baseline: DatasetProfile) -> None:
    # Given a 0.03-std shift in a window of 200,000 rows: significant, but tiny
    report = compare(baseline, window(baseline, 4, 200_000, shift=0.03))
    a = report.features["a"]
    # Then the test is significant but the effect is under its threshold: no drift
    assert a.p_value_adjusted < 1e-4
    assert a.score is not None and a.score < 0.05
    assert not a.drift and not report.dataset_drift


def test_small_windows_need_significance(baseline: DatasetProfile) -> None:
    # Given 250 rows shifted by 0.1 std: the effect passes, the evidence does not
    report = compare(baseline, window(baseline, 5, 250, shift=0.1))
    a = report.features["a"]
    assert report.status == "ok"
    assert a.p_value_adjusted > 0.01 and not a.drift


def test_categorical_popularity_and_new_category(baseline: DatasetProfile) -> None:
    # Given reversed popularity
    rev = compare(baseline, window(baseline, 6, 2_000, pop=POP[::-1].copy()))
    color = rev.features["color"]
    assert color.kind == "categorical" and color.method == "jensen_shannon"
    assert color.drift and color.score is not None and color.score > 0.3
    # Given 5% of rows in a category the baseline never saw
    batch = make_batch(np.random.default_rng(7), 4_000)
    batch.columns["color"][:200] = "purple"
    new = compare(baseline, profile_batch(batch, baseline)).features["color"]
    # Then it drifts on unseen categories (the JS distance alone stays small)
    assert new.drift and "unseen_categories" in new.reasons
    assert new.unseen_share == pytest.approx(0.05)
    assert new.unseen_categories == ["purple"]
    assert new.js_distance is not None and new.js_distance < 0.2


def test_missing_rate_change_and_absent_feature(baseline: DatasetProfile) -> None:
    # Given a window where d is missing on 30% of rows
    batch = make_batch(np.random.default_rng(8), 2_000)
    batch.columns["d"][:600] = np.nan
    d = compare(baseline, profile_batch(batch, baseline)).features["d"]
    assert d.drift and d.reasons == ["missing_rate"]
    assert (d.missing_rate_baseline, d.missing_rate_current) == (0.0, pytest.approx(0.3))
    # Given a current profile that lacks feature b entirely
    current = window(baseline, 9, 2_000)
    del current.features["b"]
    report = compare(baseline, current)
    assert report.missing_features == ["b"]
    assert report.features["b"].drift and report.features["b"].missing_rate_current == 1.0


def test_insufficient_and_empty_windows_never_drift(baseline: DatasetProfile) -> None:
    # Given a heavily drifted window below min_rows
    small = compare(baseline, window(baseline, 10, 150, shift=3.0))
    assert small.status == "insufficient_data" and not small.dataset_drift
    assert not any(f.drift for f in small.features.values())
    assert "fewer than min_rows=200" in small.reason
    # Given an empty window
    empty = compare(baseline, empty_profile(baseline))
    assert (empty.status, empty.dataset_drift, empty.n_rows) == ("insufficient_data", False, 0)
    assert empty.prediction_drift is None
    d = empty.to_dict()
    assert d["features"]["a"]["score"] is None and d["features"]["a"]["n"] == 0
    orjson.dumps(d)


def test_drift_share_and_critical_features(baseline: DatasetProfile) -> None:
    current = window(baseline, 11, 3_000, shift=0.5)
    # One of five features drifts: enough by default, not with drift_share 0.4
    assert compare(baseline, current).dataset_drift
    strict = compare(baseline, current, DriftConfig(drift_share=0.4))
    assert strict.n_drifted == 1 and not strict.dataset_drift
    assert "2 needed" in strict.reason
    # Unless the drifted feature is critical
    crit = compare(baseline, current, DriftConfig(drift_share=0.4, critical_features=("a",)))
    assert crit.dataset_drift and "critical feature(s) drifted: a" in crit.reason
    with pytest.raises(DriftloopError, match=r"critical_features not in the baseline: \['z'\]"):
        compare(baseline, current, DriftConfig(critical_features=("z",)))


def test_prediction_drift_reported_and_optionally_counted(baseline: DatasetProfile) -> None:
    current = window(baseline, 12, 3_000, pred_shift=0.15)
    report = compare(baseline, current)
    assert report.prediction_drift is not None and report.prediction_drift.drift
    assert not report.dataset_drift  # inputs did not drift; outputs are not counted by default
    counted = compare(baseline, current, DriftConfig(count_prediction_drift=True))
    assert counted.dataset_drift and "the model output drifted" in counted.reason


def test_report_json_shape(baseline: DatasetProfile) -> None:
    d = compare(baseline, window(baseline, 13, 1_000, shift=0.4)).to_dict()
    # The JSON parses back, has no NaN, and carries the documented fields
    text = orjson.dumps(d)
    assert b"NaN" not in text
    assert {
        "schema_version",
        "dataset_drift",
        "status",
        "n_rows",
        "n_malformed",
        "drift_share",
        "n_drifted",
        "drifted_features",
        "config",
        "prediction_drift",
        "features",
        "js_log_base",
    } <= set(d)
    assert d["schema_version"] == 1 and d["js_log_base"] == 2
    assert d["config"]["fdr"] == 0.01
    want = {
        "kind",
        "drift",
        "method",
        "score",
        "threshold",
        "p_value",
        "p_value_adjusted",
        "psi",
        "ks",
        "wasserstein",
        "js_distance",
        "unseen_share",
        "missing_rate_baseline",
        "missing_rate_current",
        "n",
    }
    for row in d["features"].values():
        assert want <= set(row)
        assert 0.0 <= row["p_value"] <= row["p_value_adjusted"] <= 1.0
    assert d["features"]["a"]["drift"] is True
    assert math.isfinite(d["features"]["a"]["psi"])


def test_current_profile_on_other_bins_is_an_error(baseline: DatasetProfile) -> None:
    other = build_baseline([make_batch(np.random.default_rng(14), 2_000)], SCHEMA)
    with pytest.raises(DriftloopError, match="'a' was not profiled on the baseline's bins"):
        compare(baseline, profile_batch(make_batch(np.random.default_rng(15), 500), other))


def test_check_sources_reads_capture_files(tmp_path: Path, baseline: DatasetProfile) -> None:
    # Given a capture file of 400 shifted rows and one broken line
    rng = np.random.default_rng(16)
    batch = make_batch(rng, 400, shift=1.0)
    lines = []
    for i in range(400):
        row = ",".join(str(batch.columns[f][i]) for f in SCHEMA.features)
        assert batch.predictions is not None
        lines.append(
            encode_capture_record(
                input_data=row.encode(),
                input_content_type="text/csv",
                output_data=f"{batch.predictions[i]:.6f}".encode(),
                output_content_type="text/csv",
                event_id=f"e{i}",
                inference_time=datetime(2026, 11, 1, 10, tzinfo=UTC),
            )
        )
    lines.insert(7, b"{not json\n")
    folder = tmp_path / "capture" / "2026" / "11" / "01" / "10"
    folder.mkdir(parents=True)
    (folder / "part.jsonl").write_bytes(b"".join(lines))
    # When checked
    report, current = check_sources(baseline, [tmp_path / "capture"])
    # Then every good row was profiled, the bad line counted, and a drifted
    assert current.n_rows == 400 and report.n_malformed == 1
    assert report.dataset_drift and "a" in report.drifted_features
    with pytest.raises(DriftloopError, match="no such file or folder"):
        check_sources(baseline, [tmp_path / "absent"])
