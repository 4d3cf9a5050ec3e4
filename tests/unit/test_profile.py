"""Profiles: binning, merging, baselines, persistence and Model Monitor compatibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from driftloop import FeatureBatch, Schema
from driftloop.errors import DriftloopError
from driftloop.profile import (
    MAX_UNSEEN,
    CategoricalProfile,
    DatasetProfile,
    NumericProfile,
    bin_index,
    build_baseline,
    category_key,
    empty_profile,
    from_model_monitor_statistics,
    profile_batch,
    profile_numeric,
    quantile_edges,
    to_model_monitor_constraints,
    to_model_monitor_statistics,
)

SCHEMA = Schema(features=("age", "income", "score", "city"), categorical=frozenset({"city"}))
CITIES = np.array(["paris", "lyon", "nice", "lille", "brest"], dtype=object)


def make_batch(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> FeatureBatch:
    age = rng.integers(18, 80, n).astype(np.float64)
    income = rng.lognormal(10 + shift, 0.5, n)
    score = rng.normal(shift, 1.0, n)
    score[rng.random(n) < 0.02] = np.nan
    city = CITIES[rng.choice(5, n, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
    city[rng.random(n) < 0.01] = None
    return FeatureBatch(
        columns={"age": age, "income": income, "score": score, "city": city},
        n_rows=n,
        predictions=rng.random(n),
    )


@pytest.fixture(scope="module")
def baseline() -> DatasetProfile:
    rng = np.random.default_rng(0)
    return build_baseline([make_batch(rng, 20_000)], SCHEMA, metrics={"auc": 0.8})


def split(batch: FeatureBatch, at: int) -> tuple[FeatureBatch, FeatureBatch]:
    def part(a: int, b: int) -> FeatureBatch:
        assert batch.predictions is not None
        return FeatureBatch(
            columns={k: v[a:b] for k, v in batch.columns.items()},
            n_rows=b - a,
            predictions=batch.predictions[a:b],
        )

    return part(0, at), part(at, batch.n_rows)


def assert_profiles_equal(a: DatasetProfile, b: DatasetProfile) -> None:
    assert a.n_rows == b.n_rows
    for name in SCHEMA.features:
        fa, fb = a.features[name], b.features[name]
        if isinstance(fa, NumericProfile):
            assert isinstance(fb, NumericProfile)
            assert np.array_equal(fa.counts, fb.counts)
            assert (fa.n, fa.n_missing, fa.n_invalid) == (fb.n, fb.n_missing, fb.n_invalid)
            assert fa.mean == pytest.approx(fb.mean, rel=1e-9, abs=1e-12)
            assert fa.m2 == pytest.approx(fb.m2, rel=1e-9)
            assert (fa.min, fa.max) == (fb.min, fb.max)
            assert fa.tail_sums == pytest.approx(fb.tail_sums, rel=1e-9)
        else:
            assert isinstance(fb, CategoricalProfile)
            assert (fa.counts, fa.other, fa.n_missing) == (fb.counts, fb.other, fb.n_missing)


# --------------------------------------------------------------------------- numeric binning


def test_bin_index_equals_searchsorted_on_awkward_distributions() -> None:
    # Given heavy tails, point masses, tiny and huge scales, and values right on the edges
    rng = np.random.default_rng(1)
    samples = [
        rng.normal(size=50_000),
        rng.lognormal(0, 3, 50_000),
        rng.standard_cauchy(50_000),
        rng.poisson(2, 50_000).astype(float),
        rng.normal(1e9, 1e-3, 50_000),
        np.concatenate([np.zeros(30_000), rng.exponential(1, 20_000)]),
    ]
    for x in samples:
        edges = quantile_edges(x)
        probe = np.concatenate([x, edges, np.nextafter(edges, -np.inf), [-1e300, 1e300]])
        # When binned with the lookup table / Then the bins are exactly searchsorted's
        assert np.array_equal(bin_index(probe, edges), np.searchsorted(edges, probe, side="right"))


def test_numeric_profile_counts_missing_invalid_and_moments() -> None:
    # Given values with NaN, +inf and -inf
    x = np.array([1.0, 2.0, np.nan, 3.0, np.inf, 4.0, -np.inf, 10.0])
    edges = np.array([2.0, 4.0])
    # When profiled
    p = profile_numeric(x, edges)
    # Then finite values are binned (x<2, 2<=x<4, x>=4), NaN is missing, inf invalid
    assert p.counts.tolist() == [1, 2, 2]
    assert (p.n, p.n_missing, p.n_invalid, p.n_present) == (8, 1, 2, 5)
    finite = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    assert p.mean == pytest.approx(finite.mean())
    assert p.variance == pytest.approx(finite.var())
    assert (p.min, p.max) == (1.0, 10.0)
    assert p.tail_means == (1.0, 7.0)
    assert p.integral


def test_quantile_edges_for_discrete_and_constant_columns() -> None:
    # Integer data: edges are data values, each bin holds whole integers
    x = np.repeat(np.arange(5.0), [10, 40, 30, 15, 5])
    edges = quantile_edges(x, 8)
    assert set(edges.tolist()) <= set(range(5))
    # A constant column still gets one edge (two bins) rather than none
    assert quantile_edges(np.full(100, 7.0)).tolist() == [7.0]
    assert quantile_edges(np.array([np.nan, np.inf])).size == 0


# --------------------------------------------------------------------------- merge


def test_merge_equals_profile_of_union_and_is_associative(baseline: DatasetProfile) -> None:
    # Given a window split into three parts
    rng = np.random.default_rng(2)
    whole = make_batch(rng, 9_000, shift=0.3)
    ab, c = split(whole, 6_000)
    a, b = split(ab, 2_500)
    pa, pb, pc = (profile_batch(x, baseline) for x in (a, b, c))
    # When merged in different orders / Then every order equals the profile of the whole
    full = profile_batch(whole, baseline)
    assert_profiles_equal(pa.merge(pb).merge(pc), full)
    assert_profiles_equal(pa.merge(pb.merge(pc)), full)
    assert_profiles_equal(pc.merge(pa).merge(pb), full)
    # And the empty profile is the identity
    assert_profiles_equal(empty_profile(baseline).merge(full), full)
    assert full.predictions is not None and full.predictions.n == 9_000


def test_unseen_category_cap_keeps_merging_exact(baseline: DatasetProfile) -> None:
    # Given a window with many more unseen categories than the cap, split in two
    rng = np.random.default_rng(3)
    n = 5_000
    batch = make_batch(rng, n)
    names = np.array([f"new-{i}" for i in range(3 * MAX_UNSEEN)], dtype=object)
    batch.columns["city"] = names[rng.integers(0, names.size, n)]
    left, right = split(batch, 1_234)
    # When profiled whole and in parts
    whole = profile_batch(batch, baseline).features["city"]
    merged = profile_batch(left, baseline).merge(profile_batch(right, baseline)).features["city"]
    # Then at most MAX_UNSEEN names are kept, the rest counted, and both agree exactly
    assert isinstance(whole, CategoricalProfile) and isinstance(merged, CategoricalProfile)
    assert len(whole.counts) == MAX_UNSEEN
    assert whole.n_present == n
    assert (whole.counts, whole.other) == (merged.counts, merged.other)


def test_merge_refuses_profiles_on_different_bins(baseline: DatasetProfile) -> None:
    rng = np.random.default_rng(4)
    other = build_baseline([make_batch(rng, 3_000)], SCHEMA)
    with pytest.raises(DriftloopError, match="different bins"):
        profile_batch(make_batch(rng, 100), baseline).merge(
            profile_batch(make_batch(rng, 100), other)
        )


# --------------------------------------------------------------------------- baselines


def test_baseline_from_dataframe_matches_baseline_from_batches() -> None:
    # Given the same rows as a DataFrame and as two batches
    rng = np.random.default_rng(5)
    batch = make_batch(rng, 4_000)
    frame = pd.DataFrame(batch.columns)
    assert batch.predictions is not None
    # When both baselines are built
    from_frame = build_baseline(frame, SCHEMA, predictions=batch.predictions)
    from_batches = build_baseline(list(split(batch, 1_500)), SCHEMA)
    # Then edges (exact quantiles: the data fits the reservoir) and all counts agree
    for name in ("age", "income", "score"):
        f, b = from_frame.features[name], from_batches.features[name]
        assert isinstance(f, NumericProfile) and isinstance(b, NumericProfile)
        assert np.array_equal(f.edges, b.edges)
    assert_profiles_equal(from_frame, from_batches)
    assert from_frame.predictions is not None
    assert from_frame.predictions.n == 4_000
    city = from_frame.features["city"]
    assert isinstance(city, CategoricalProfile)
    assert city.n_missing == int(sum(v is None for v in batch.columns["city"]))
    assert sum(city.counts.values()) + city.other + city.n_missing == 4_000


def test_baseline_from_batches_larger_than_the_reservoir_keeps_exact_counts() -> None:
    # Given more values than the reservoir holds, from a one-shot generator
    rng = np.random.default_rng(6)
    parts = [make_batch(rng, 5_000) for _ in range(4)]
    # When built with a 3,000-value reservoir
    p = build_baseline(iter(parts), SCHEMA, reservoir_size=3_000)
    # Then counts are exact (second pass) and edges are close to the true quantiles
    score = p.features["score"]
    assert isinstance(score, NumericProfile)
    all_scores = np.concatenate([b.columns["score"] for b in parts])
    finite = all_scores[np.isfinite(all_scores)]
    assert score.n_present == finite.size and score.n == 20_000
    assert np.array_equal(
        score.counts, np.bincount(np.searchsorted(score.edges, finite, side="right"), minlength=64)
    )
    shares = score.counts / score.counts.sum()
    assert shares.max() < 2.5 / 64  # edges from a sample still give near-equal bins


def test_top_k_keeps_the_most_frequent_categories_and_counts_the_rest() -> None:
    rng = np.random.default_rng(7)
    batch = make_batch(rng, 3_000)
    p = build_baseline([batch], SCHEMA, top_k=2)
    city = p.features["city"]
    assert isinstance(city, CategoricalProfile)
    assert set(city.counts) == {"paris", "lyon"}
    assert city.other == sum(v not in (None, "paris", "lyon") for v in batch.columns["city"])


def test_category_key_normalises_numbers_and_missing() -> None:
    assert category_key(3.0) == "3"
    assert category_key(np.float64(2.5)) == "2.5"
    assert category_key(float("nan")) is None
    assert category_key(None) is None
    assert category_key(7) == "7"
    assert category_key(b"x") == "x"


def test_bad_input_gives_one_line_errors() -> None:
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(make_batch(rng, 50).columns)
    with pytest.raises(DriftloopError, match=r"columns missing from the data: \['city'\]"):
        build_baseline(frame.drop(columns="city"), SCHEMA)
    bad = frame.astype({"age": object})
    bad.loc[7, "age"] = "forty"
    with pytest.raises(DriftloopError, match=r"'age' has a non-numeric value 'forty' at row 7"):
        build_baseline(bad, SCHEMA)
    base = build_baseline(frame, SCHEMA)
    short = make_batch(rng, 10)
    short.columns["age"] = short.columns["age"][:5]
    with pytest.raises(DriftloopError, match="'age' has 5 values for 10 rows"):
        profile_batch(short, base)


def test_object_numeric_column_with_none_is_missing(baseline: DatasetProfile) -> None:
    # Given a numeric column delivered as objects, None for missing
    rng = np.random.default_rng(12)
    batch = make_batch(rng, 4)
    batch.columns["score"] = np.array([0.5, None, "1.5", 2], dtype=object)
    # When profiled / Then None is missing and the numbers are binned
    score = profile_batch(batch, baseline).features["score"]
    assert isinstance(score, NumericProfile)
    assert (score.n, score.n_missing, score.n_present) == (4, 1, 3)
    assert score.mean == pytest.approx(4.0 / 3)
    batch.columns["score"] = np.array([0.5, "n/a"], dtype=object)
    batch.columns = {"score": batch.columns["score"]}
    batch.n_rows = 2
    with pytest.raises(DriftloopError, match="'score' has a non-numeric value 'n/a' at row 1"):
        profile_batch(batch, baseline)


def test_absent_column_counts_as_missing(baseline: DatasetProfile) -> None:
    rng = np.random.default_rng(9)
    batch = make_batch(rng, 300)
    del batch.columns["income"], batch.columns["city"]
    p = profile_batch(batch, baseline)
    income, city = p.features["income"], p.features["city"]
    assert isinstance(income, NumericProfile) and isinstance(city, CategoricalProfile)
    assert (income.n, income.n_missing, income.n_present) == (300, 300, 0)
    assert (city.n, city.n_missing) == (300, 300)


# --------------------------------------------------------------------------- persistence


def test_save_load_round_trip_and_size(tmp_path: Path, baseline: DatasetProfile) -> None:
    path = tmp_path / "baseline.json"
    baseline.save(path)
    loaded = DatasetProfile.load(path)
    assert loaded.to_dict() == baseline.to_dict()
    assert loaded.metrics == {"auc": 0.8}
    # A window profile (with its reference's category list) round-trips too
    window = profile_batch(make_batch(np.random.default_rng(1), 500), baseline)
    assert DatasetProfile.from_json(window.to_json()).to_dict() == window.to_dict()


def test_25_feature_baseline_is_compact() -> None:
    # Given a 25-feature baseline (20 numeric, 5 categorical of 50 categories)
    rng = np.random.default_rng(10)
    n = 20_000
    cols: dict[str, np.ndarray] = {f"x{i}": rng.lognormal(0, 1, n) for i in range(20)}
    cats = np.array([f"category-{i}" for i in range(50)], dtype=object)
    cols.update({f"c{i}": cats[rng.integers(0, 50, n)] for i in range(5)})
    schema = Schema(features=tuple(cols), categorical=frozenset(f"c{i}" for i in range(5)))
    p = build_baseline([FeatureBatch(columns=cols, n_rows=n, predictions=rng.random(n))], schema)
    # Then its JSON stays well under 100 KB
    assert len(p.to_json()) < 60_000


def test_load_errors_name_the_file(tmp_path: Path, baseline: DatasetProfile) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(DriftloopError, match=f"{missing}: baseline profile not found"):
        DatasetProfile.load(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"driftloop_profile_version": 1,')
    with pytest.raises(DriftloopError, match=f"{corrupt}: corrupt JSON"):
        DatasetProfile.load(corrupt)
    wrong = tmp_path / "wrong.json"
    d = baseline.to_dict()
    d["driftloop_profile_version"] = 99
    wrong.write_bytes(orjson.dumps(d))
    with pytest.raises(DriftloopError, match=f"{wrong}: unsupported driftloop_profile_version 99"):
        DatasetProfile.load(wrong)
    broken = tmp_path / "broken.json"
    d = baseline.to_dict()
    d["features"]["age"]["counts"] = [1, 2]
    broken.write_bytes(orjson.dumps(d))
    with pytest.raises(DriftloopError, match=f"{broken}: malformed profile"):
        DatasetProfile.load(broken)


# --------------------------------------------------------------------------- Model Monitor


def test_model_monitor_statistics_layout(baseline: DatasetProfile) -> None:
    doc = to_model_monitor_statistics(baseline)
    assert doc["version"] == 0 and doc["dataset"] == {"item_count": 20_000}
    by_name = {f["name"]: f for f in doc["features"]}
    age = by_name["age"]
    assert age["inferred_type"] == "Integral"
    assert by_name["score"]["inferred_type"] == "Fractional"
    num = by_name["score"]["numerical_statistics"]
    assert set(num) == {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
    score = baseline.features["score"]
    assert isinstance(score, NumericProfile)
    assert num["common"] == {"num_present": score.n_present, "num_missing": score.n_missing}
    kll = num["distribution"]["kll"]
    assert sum(b["count"] for b in kll["buckets"]) == score.n_present
    assert kll["buckets"][0]["lower_bound"] == score.min
    assert kll["buckets"][-1]["upper_bound"] == score.max
    assert set(kll["sketch"]["parameters"]) == {"c", "k"}
    assert isinstance(kll["sketch"]["data"], list)
    city = by_name["city"]
    assert city["inferred_type"] == "String"
    buckets = city["string_statistics"]["distribution"]["categorical"]["buckets"]
    assert buckets[0]["value"] == "paris"
    assert num["std_dev"] == pytest.approx(score.std)


def test_model_monitor_constraints_layout(baseline: DatasetProfile) -> None:
    doc = to_model_monitor_constraints(baseline)
    by_name = {f["name"]: f for f in doc["features"]}
    assert by_name["income"]["num_constraints"] == {"is_non_negative": True}
    assert by_name["score"]["num_constraints"] == {"is_non_negative": False}
    assert by_name["score"]["completeness"] == pytest.approx(0.98, abs=0.005)
    assert by_name["city"]["string_constraints"]["domains"] == sorted(CITIES.tolist())
    assert doc["monitoring_config"]["distribution_constraints"]["comparison_method"] == "Robust"


def test_model_monitor_statistics_round_trip(baseline: DatasetProfile) -> None:
    # Given our statistics.json, When read back as a baseline
    back = from_model_monitor_statistics(to_model_monitor_statistics(baseline), SCHEMA)
    # Then bins, counts and category counts are the same
    for name in ("age", "income", "score"):
        a, b = baseline.features[name], back.features[name]
        assert isinstance(a, NumericProfile) and isinstance(b, NumericProfile)
        assert np.array_equal(a.edges, b.edges) and np.array_equal(a.counts, b.counts)
        assert b.std == pytest.approx(a.std, rel=1e-9)
        assert b.n_missing == a.n_missing + a.n_invalid
    city = back.features["city"]
    assert isinstance(city, CategoricalProfile)
    assert city.counts == baseline.features["city"].counts  # type: ignore[union-attr]
    # And windows profile on it like on the original
    batch = make_batch(np.random.default_rng(11), 1_000)
    a = profile_batch(batch, baseline).features["score"]
    b = profile_batch(batch, back).features["score"]
    assert isinstance(a, NumericProfile) and isinstance(b, NumericProfile)
    assert np.array_equal(a.counts, b.counts)
    # And a window from the same distribution does not drift against the imported baseline
    from driftloop.drift import compare

    assert b.tail_sums is not None and back.features["score"].tail_sums is None  # type: ignore[union-attr]
    same = profile_batch(make_batch(np.random.default_rng(13), 5_000), back)
    report = compare(back, same)
    assert not report.dataset_drift
    assert report.features["income"].score is not None and report.features["income"].score < 0.05
    # Without a schema, String features become categorical, in the document's order
    inferred = from_model_monitor_statistics(to_model_monitor_statistics(baseline))
    assert inferred.schema.features == SCHEMA.features
    assert inferred.schema.categorical == frozenset({"city"})


def test_model_monitor_import_of_equal_width_buckets_and_errors() -> None:
    # Given a statistics.json as Model Monitor writes it (10 equal-width buckets)
    buckets = [
        {"lower_bound": float(i), "upper_bound": float(i + 1), "count": 10 + i} for i in range(10)
    ]
    doc = {
        "version": 0,
        "dataset": {"item_count": 150},
        "features": [
            {
                "name": "x",
                "inferred_type": "Fractional",
                "numerical_statistics": {
                    "common": {"num_present": 145, "num_missing": 5},
                    "mean": 5.5,
                    "sum": 797.5,
                    "std_dev": 2.8,
                    "min": 0.0,
                    "max": 10.0,
                    "distribution": {"kll": {"buckets": buckets}},
                },
            }
        ],
    }
    p = from_model_monitor_statistics(doc)
    x = p.features["x"]
    assert isinstance(x, NumericProfile)
    assert x.edges.tolist() == [float(i) for i in range(1, 10)]
    assert x.counts.tolist() == [10 + i for i in range(10)]
    assert (x.n_missing, p.n_rows) == (5, 150)
    with pytest.raises(DriftloopError, match="statistics.json: not a Model Monitor"):
        from_model_monitor_statistics({"features": "x"})
    with pytest.raises(DriftloopError, match=r"features missing from the statistics: \['age'"):
        from_model_monitor_statistics(doc, SCHEMA)
