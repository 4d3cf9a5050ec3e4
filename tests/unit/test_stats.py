"""driftloop.stats against scipy (the reference) and against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from driftloop import stats

# --------------------------------------------------------------------------- special functions


@pytest.mark.parametrize("x", [0.0, 0.03, 0.2, 0.5, 0.8, 0.99, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 8.0])
def test_kolmogorov_sf_matches_scipy(x: float) -> None:
    # Given a point of the Kolmogorov distribution / When we take our tail / Then it is scipy's
    assert stats.kolmogorov_sf(x) == pytest.approx(sps.kstwobign.sf(x), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 20, 63, 150, 1000, 5000])
def test_chi2_sf_matches_scipy_across_body_and_tails(df: int) -> None:
    # Given points from far below the mean to far in the upper tail
    xs = np.concatenate([[1e-6, 0.1], np.linspace(0.5, df + 40 * math.sqrt(2 * df) + 40, 60)])
    for x in xs:
        ref = sps.chi2.sf(x, df)
        # When / Then: absolute accuracy in the body, relative accuracy in the tail
        got = stats.chi2_sf(float(x), df)
        if ref > 1e-3:
            assert got == pytest.approx(ref, abs=1e-12)
        elif ref > 1e-290:
            assert got == pytest.approx(ref, rel=1e-9)


def test_chi2_sf_edge_values_and_bad_df() -> None:
    assert stats.chi2_sf(0.0, 5) == 1.0
    assert stats.chi2_sf(math.inf, 5) == 0.0
    with pytest.raises(ValueError):
        stats.chi2_sf(1.0, 0)


@pytest.mark.parametrize("z", [-3.0, 0.0, 1.0, 1.96, 5.0, 12.0, 30.0])
def test_norm_sf_matches_scipy_deep_in_the_tail(z: float) -> None:
    assert stats.norm_sf(z) == pytest.approx(sps.norm.sf(z), rel=1e-12)


# --------------------------------------------------------------------------- effect sizes


def test_psi_hand_computed_and_epsilon_for_empty_bins() -> None:
    # Given two share vectors
    e, a = np.array([50, 30, 20]), np.array([30, 30, 40])
    pe, pa = e / 100, a / 100
    expected = float(np.sum((pa - pe) * np.log(pa / pe)))
    # Then PSI is the textbook sum, symmetric, and zero on identical shares
    assert stats.psi(e, a) == pytest.approx(expected, rel=1e-12)
    assert stats.psi(a, e) == pytest.approx(expected, rel=1e-12)
    assert stats.psi(e, e * 3) == pytest.approx(0.0, abs=1e-15)
    # And an empty bin is floored at epsilon instead of blowing up
    floored = stats.psi([10, 0], [5, 5])
    pe2 = np.array([1.0, stats.PSI_EPSILON])
    pa2 = np.array([0.5, 0.5])
    assert floored == pytest.approx(float(np.sum((pa2 - pe2) * np.log(pa2 / pe2))))
    assert stats.psi([0, 0], [1, 2]) == 0.0


def test_js_distance_matches_scipy_base2_and_is_bounded() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.integers(0, 50, 12), rng.integers(0, 50, 12)
        p[0] += 1
        q[0] += 1
        assert stats.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert stats.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert stats.js_distance([3, 4], [6, 8]) == pytest.approx(0.0, abs=1e-7)


def test_wasserstein_binned_exact_on_uniform_bins() -> None:
    # Given unit bins 0..4 (edges 1,2,3; outer bins closed at 0 and 4), mass one bin apart
    edges = [1.0, 2.0, 3.0]
    # When the mass moves one bin to the right / Then W1 is exactly one bin width
    w = stats.wasserstein_binned([0, 1, 0, 0], [0, 0, 1, 0], edges, (0.0, 4.0), (0.0, 4.0))
    assert w == pytest.approx(1.0)
    # And identical histograms are at distance zero
    assert stats.wasserstein_binned([1, 2, 3, 4], [2, 4, 6, 8], edges, (0, 4), (0, 4)) == 0.0
    # And half the mass moving two bins costs one unit
    w2 = stats.wasserstein_binned([0, 2, 0, 0], [0, 1, 0, 1], edges, (0, 4), (0, 4))
    assert w2 == pytest.approx(1.0)


def test_wasserstein_binned_close_to_exact_on_samples() -> None:
    # Given two large normal samples binned on 64 quantile edges of the first
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1, 200_000)
    for shift, scale in [(0.3, 1.0), (0.0, 1.3), (0.1, 0.9)]:
        b = rng.normal(shift, scale, 100_000)
        edges = np.quantile(a, np.arange(1, 64) / 64)
        ca = np.bincount(np.searchsorted(edges, a, side="right"), minlength=64)
        cb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=64)

        def tails(x: np.ndarray, c: np.ndarray, edges: np.ndarray = edges) -> tuple[float, float]:
            idx = np.searchsorted(edges, x, side="right")
            return float(x[idx == 0].sum() / c[0]), float(x[idx == 63].sum() / c[63])

        # When W1 is computed from the bins
        w = stats.wasserstein_binned(
            ca, cb, edges, (a.min(), a.max()), (b.min(), b.max()), tails(a, ca), tails(b, cb)
        )
        # Then it is within a few percent of the exact sample W1
        assert w == pytest.approx(sps.wasserstein_distance(a, b), rel=0.05)


def test_wasserstein_rejects_mismatched_edges() -> None:
    with pytest.raises(ValueError):
        stats.wasserstein_binned([1, 2], [1, 2], [0.0, 1.0], (0, 1), (0, 1))


# --------------------------------------------------------------------------- tests


def test_ks_binned_equals_exact_ks_on_discrete_data() -> None:
    # Given integer data binned one value per bin, the edge CDFs are the exact CDFs
    rng = np.random.default_rng(11)
    a = rng.poisson(4, 3000)
    b = rng.poisson(4.4, 2000)
    edges = np.arange(1, 15)
    ca = np.bincount(np.searchsorted(edges, a, side="right"), minlength=15)
    cb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=15)
    d, p = stats.ks_binned(ca, cb)
    ref = sps.ks_2samp(a, b, method="asymp")
    # Then D is the exact statistic and p the asymptotic two-sample p-value (Stephens' form)
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    en = math.sqrt(3000 * 2000 / 5000)
    assert p == pytest.approx(sps.kstwobign.sf((en + 0.12 + 0.11 / en) * d), rel=1e-9)
    assert p == pytest.approx(ref.pvalue, rel=0.35, abs=1e-6)


def test_ks_binned_is_conservative_when_bins_hide_the_supremum() -> None:
    # Given continuous samples and coarse bins
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 2000), rng.normal(0.2, 1, 2000)
    edges = np.array([-1.0, 0.0, 1.0])
    ca = np.bincount(np.searchsorted(edges, a, side="right"), minlength=4)
    cb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=4)
    d, p = stats.ks_binned(ca, cb)
    ref = sps.ks_2samp(a, b)
    # Then the binned D never exceeds the exact D (so its p-value is never smaller)
    assert d <= ref.statistic + 1e-12
    assert stats.ks_binned([0, 0], [1, 2]) == (0.0, 1.0)


def test_chi2_two_sample_matches_scipy_without_pooling() -> None:
    a, b = np.array([120, 80, 60, 40]), np.array([100, 90, 70, 55])
    stat, df, p = stats.chi2_two_sample(a, b)
    ref = sps.chi2_contingency(np.vstack([a, b]), correction=False)
    assert stat == pytest.approx(ref.statistic, rel=1e-12)
    assert df == ref.dof
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_chi2_two_sample_pools_rare_columns() -> None:
    # Given a table whose last three columns expect fewer than 5 counts
    a = np.array([500, 300, 2, 1, 0])
    b = np.array([500, 300, 1, 1, 8])
    stat, df, p = stats.chi2_two_sample(a, b)
    # Then they are pooled into one column, which here is big enough to stand alone
    pooled = np.array([[500, 300, 3], [500, 300, 10]])
    ref = sps.chi2_contingency(pooled, correction=False)
    assert (stat, df) == (pytest.approx(ref.statistic), ref.dof)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    # And a pooled column that is still rare is folded into the smallest other column
    a2, b2 = np.array([500, 300, 100, 1]), np.array([50, 30, 10, 0])
    stat2, df2, _ = stats.chi2_two_sample(a2, b2)
    ref2 = sps.chi2_contingency(np.array([[500, 300, 101], [50, 30, 10]]), correction=False)
    assert (stat2, df2) == (pytest.approx(ref2.statistic), ref2.dof)
    # And a single usable column is no evidence at all
    assert stats.chi2_two_sample([10, 0], [5, 0]) == (0.0, 0, 1.0)


def test_two_proportion_test_equals_2x2_chi_square() -> None:
    diff, p = stats.two_proportion_test(30, 1000, 60, 1200)
    ref = sps.chi2_contingency(np.array([[30, 970], [60, 1140]]), correction=False)
    assert diff == pytest.approx(60 / 1200 - 30 / 1000)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    assert stats.two_proportion_test(0, 100, 0, 100) == (0.0, 1.0)
    assert stats.two_proportion_test(0, 0, 3, 10) == (0.0, 1.0)


def test_welch_mean_test_matches_scipy_for_large_samples() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 5000), rng.normal(0.05, 1.3, 3000)
    diff, p = stats.welch_mean_test(
        a.size, a.mean(), a.var(ddof=1), b.size, b.mean(), b.var(ddof=1)
    )
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert p == pytest.approx(ref.pvalue, rel=0.02)
    assert stats.welch_mean_test(10, 1.0, 0.0, 10, 1.0, 0.0)[1] == 1.0
    assert stats.welch_mean_test(10, 1.0, 0.0, 10, 2.0, 0.0)[1] == 0.0


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(9)
    p = np.concatenate([rng.random(30), rng.random(5) * 1e-4, [1.0, 0.0]])
    assert np.allclose(stats.benjamini_hochberg(p), sps.false_discovery_control(p), rtol=1e-12)
    assert stats.benjamini_hochberg([]).size == 0
    with pytest.raises(ValueError):
        stats.benjamini_hochberg([0.5, 1.5])


def test_unseen_share_counts_unlisted_rows_too() -> None:
    assert stats.unseen_share(["a", "b"], {"a": 5, "b": 3, "z": 2}) == pytest.approx(0.2)
    assert stats.unseen_share(["a"], {"a": 6}, current_other=4) == pytest.approx(0.4)
    assert stats.unseen_share(["a"], {}) == 0.0


def test_counts_are_validated() -> None:
    with pytest.raises(ValueError):
        stats.psi([1, -1], [1, 1])
    with pytest.raises(ValueError):
        stats.js_distance([1, 2, 3], [1, 2])


@pytest.mark.parametrize("n", [1, 7, 60, 1_000, 200_000])
@pytest.mark.parametrize("p", [1e-5, 0.01, 0.3, 0.5, 0.97])
def test_binom_sf_and_beta_inc_match_scipy(n: int, p: float) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n, min(n, int(n * p) + 3), n + 1}):
        ref = sps.binom.sf(k - 1, n, p)
        got = stats.binom_sf(k, n, p)
        if ref > 1e-3:
            assert got == pytest.approx(ref, abs=1e-9)  # lgamma of ~1e5 limits the digits
        elif ref > 1e-290:
            assert got == pytest.approx(ref, rel=1e-7)
    assert stats.beta_inc(2.5, 4.0, 0.3) == pytest.approx(sps.beta.cdf(0.3, 2.5, 4.0), rel=1e-12)


def test_conditional_count_test_is_exact_for_few_events() -> None:
    # Given no unseen value in 100,000 baseline rows and 50 in 1,000 current rows
    p = stats.conditional_count_test(0, 100_000, 50, 1_000, alternative="greater")
    # Then the evidence is overwhelming (all 50 events fell in the 1% of exposure)
    assert p == pytest.approx((1_000 / 101_000) ** 50, rel=1e-9)
    # And one stray event is no evidence at all
    assert stats.conditional_count_test(0, 100_000, 1, 1_000, alternative="greater") > 0.009
    # Two-sided equals the binomial test conditional on the total
    ref = sps.binomtest(30, 40, 2_000 / 5_000).pvalue
    got = stats.conditional_count_test(10, 3_000, 30, 2_000)
    assert got == pytest.approx(
        ref, rel=0.3
    )  # doubling the smaller tail vs scipy's likelihood rule
    assert stats.conditional_count_test(0, 10, 0, 10) == 1.0
    with pytest.raises(ValueError):
        stats.conditional_count_test(1, 10, 1, 10, alternative="less")


def test_compare_binned_equals_the_single_statistics() -> None:
    rng = np.random.default_rng(12)
    a, b = rng.integers(0, 500, 16).astype(float), rng.integers(0, 50, 16).astype(float)
    edges = np.cumsum(rng.random(15))
    args = ((-1.0, 20.0), (-2.0, 18.0), (-0.5, 17.0), (-0.7, 16.0))
    res = stats.compare_binned(a, b, edges, *args)
    assert res.psi == stats.psi(a, b)
    assert (res.ks, res.ks_p_value) == stats.ks_binned(a, b)
    chi2, _, chi2_p = stats.chi2_two_sample(a, b)
    assert (res.chi2, res.chi2_p_value) == (chi2, chi2_p)
    assert res.wasserstein == pytest.approx(stats.wasserstein_binned(a, b, edges, *args))
    with pytest.raises(ValueError):
        stats.compare_binned(a, np.zeros(16), edges, *args)
