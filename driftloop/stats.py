"""Drift statistics on binned counts: the numbers behind every drift verdict.

Why this module exists: the drift check runs in a small Lambda bundle, so it cannot
carry scipy. Everything here works on the counts a profile already holds (bin counts,
category counts, missing counts), is vectorised with numpy, and implements the few
special functions it needs (the Kolmogorov distribution, the chi-square survival
function via the regularized incomplete gamma function, the normal tail) from their
textbook series. The unit tests hold them against scipy.

Every test here is a TWO-sample test: the baseline is itself a finite sample, and
treating it as the truth inflates false alarms when windows are large.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

#: Floor for an empty bin's share in PSI (a share of 0 would make the log infinite).
PSI_EPSILON = 1e-4
#: Cells of a contingency table whose expected count is below this are pooled.
MIN_EXPECTED = 5.0

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- special functions


def norm_sf(z: float) -> float:
    """Upper tail of the standard normal, P(Z > z), accurate far into the tail (erfc)."""
    return 0.5 * math.erfc(z / _SQRT2)


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (the limit law of sqrt(n) * D_n).

    Two series cover the whole range with a handful of terms each:
    for x >= 1, Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2) (alternating, fast);
    for x < 1, the theta-function dual 1 - sqrt(2 pi)/x sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 x^2)).
    """
    if not math.isfinite(x):
        return 0.0 if x > 0 else 1.0
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        if x < 0.05:
            return 1.0
        t = -(math.pi**2) / (8.0 * x * x)
        s = sum(math.exp((2 * k - 1) ** 2 * t) for k in range(1, 8))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / x * s))
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-300 or term < 1e-17 * abs(total):
            break
    return min(1.0, max(0.0, 2.0 * total))


def _gamma_series_p(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) by its power series (x < a + 1)."""
    term = 1.0 / a
    total = term
    ap = a
    for _ in range(10_000):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_cf_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) by Lentz's continued fraction (x >= a + 1)."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a)."""
    if a <= 0:
        raise ValueError(f"gamma_q: a must be positive, got {a}")
    if x <= 0:
        return 1.0
    if not math.isfinite(x):
        return 0.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_series_p(a, x))
    return min(1.0, _gamma_cf_q(a, x))


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for a chi-square variable with `df` degrees of freedom: Q(df/2, x/2)."""
    if df <= 0:
        raise ValueError(f"chi2_sf: df must be positive, got {df}")
    return gamma_q(df / 2.0, x / 2.0)


# --------------------------------------------------------------------------- helpers


def _counts(c: ArrayLike) -> FloatArray:
    arr = np.asarray(c, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("counts must be one-dimensional")
    if arr.size and (arr.min() < 0 or not np.all(np.isfinite(arr))):
        raise ValueError("counts must be finite and non-negative")
    return arr


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
    ca, cb = _counts(a), _counts(b)
    if ca.shape != cb.shape:
        raise ValueError(f"count vectors differ in length: {ca.size} != {cb.size}")
    return ca, cb


# --------------------------------------------------------------------------- effect sizes


def psi(expected: ArrayLike, actual: ArrayLike, eps: float = PSI_EPSILON) -> float:
    """Population Stability Index sum((a - e) * ln(a / e)) over shares of the same bins.

    Shares are floored at `eps` (1e-4 by default: a bin the baseline never saw, or the
    window left empty, contributes a large but finite amount instead of infinity).
    Returns 0.0 when either side is empty.
    """
    e, a = _pair(expected, actual)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    pe = np.maximum(e / e.sum(), eps)
    pa = np.maximum(a / a.sum(), eps)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def js_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon distance with log base 2 (0 = identical, 1 = disjoint supports).

    The square root of the JS divergence, so it is a metric; defined for empty bins.
    Returns 0.0 when either side is empty.
    """
    cp, cq = _pair(p, q)
    if cp.sum() <= 0 or cq.sum() <= 0:
        return 0.0
    pp = cp / cp.sum()
    pq = cq / cq.sum()
    m = 0.5 * (pp + pq)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(pp > 0, pp * np.log2(pp / m), 0.0)
        kl_q = np.where(pq > 0, pq * np.log2(pq / m), 0.0)
    div = 0.5 * float(kl_p.sum() + kl_q.sum())
    return math.sqrt(min(1.0, max(0.0, div)))


def _cdf_on_grid(
    counts: FloatArray,
    edges: FloatArray,
    lo: float,
    hi: float,
    tail_means: tuple[float, float] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Knots (x, F(x)) of the piecewise-linear CDF that spreads each bin's mass evenly.

    Inner bins span their edges. The two open outer bins need an outer end: with
    `tail_means` (the mean of the values in each outer bin) the bin becomes the interval
    whose uniform mass has that mean, [2*m0 - e0, e0] and [e_last, 2*m1 - e_last]; without
    them it is closed by the observed min / max. Means are far steadier than extremes (a
    window's max moves a lot from sample to sample, and would move W with it). A degenerate
    outer bin (all its mass on the edge, as with integer data) gets its neighbour's width.
    """
    k = counts.size
    total = counts.sum()
    if k == 1:
        right = hi if hi > lo else lo + 1.0
        return np.array([lo, right]), np.array([0.0, 1.0])
    inner_w = np.diff(edges)
    first_w = float(inner_w[0]) if inner_w.size else 1.0
    last_w = float(inner_w[-1]) if inner_w.size else 1.0
    e0, e1 = float(edges[0]), float(edges[-1])
    if tail_means is not None and math.isfinite(tail_means[0]):
        left = 2.0 * tail_means[0] - e0
    else:
        left = lo
    left = min(left, e0) if math.isfinite(left) else e0
    if counts[0] > 0 and left >= e0:
        left = e0 - (first_w if first_w > 0 else 1.0)
    if tail_means is not None and math.isfinite(tail_means[1]):
        right = 2.0 * tail_means[1] - e1
    else:
        right = hi
    right = max(right, e1) if math.isfinite(right) else e1
    if counts[-1] > 0 and right <= e1:
        right = e1 + (last_w if last_w > 0 else 1.0)
    xs = np.concatenate(([left], edges, [right]))
    fs = np.concatenate(([0.0], np.cumsum(counts) / total))
    fs[-1] = 1.0
    return xs, fs


def _abs_area(d0: FloatArray, d1: FloatArray, w: FloatArray) -> float:
    """Integral of |linear interpolation between d0 and d1| over widths w (exact)."""
    same = d0 * d1 >= 0
    a0, a1 = np.abs(d0), np.abs(d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.where(a0 + a1 > 0, (d0 * d0 + d1 * d1) / (2.0 * (a0 + a1)), 0.0)
    area = np.where(same, 0.5 * (a0 + a1), cross) * w
    return float(area.sum())


def wasserstein_binned(
    counts_a: ArrayLike,
    counts_b: ArrayLike,
    edges: ArrayLike,
    range_a: tuple[float, float],
    range_b: tuple[float, float],
    tail_means_a: tuple[float, float] | None = None,
    tail_means_b: tuple[float, float] | None = None,
) -> float:
    """Wasserstein-1 (earth mover's) distance between two binned distributions, in data units.

    Both share the inner `edges` (k-1 edges for k bins). Mass is spread evenly inside each
    bin, so each CDF is piecewise linear and W1 = integral |F_a - F_b| dx is computed
    exactly on the union of knots. Each side's open outer bins are closed by the mean of
    the values in them (`tail_means_*`, see `_cdf_on_grid`) or, without those, by its own
    observed (min, max). Returns 0.0 when either side is empty.
    """
    ca, cb = _pair(counts_a, counts_b)
    e = np.asarray(edges, dtype=np.float64)
    if e.size != ca.size - 1:
        raise ValueError(f"{ca.size} bins need {ca.size - 1} edges, got {e.size}")
    if ca.sum() <= 0 or cb.sum() <= 0:
        return 0.0
    xa, fa = _cdf_on_grid(ca, e, range_a[0], range_a[1], tail_means_a)
    xb, fb = _cdf_on_grid(cb, e, range_b[0], range_b[1], tail_means_b)
    grid = np.union1d(xa, xb)
    da = np.interp(grid, xa, fa, left=0.0, right=1.0)
    db = np.interp(grid, xb, fb, left=0.0, right=1.0)
    d = da - db
    return _abs_area(d[:-1], d[1:], np.diff(grid))


# --------------------------------------------------------------------------- two-sample tests


def ks_binned(counts_a: ArrayLike, counts_b: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on binned CDFs: (D, p-value).

    D is the largest gap between the two cumulative shares at the bin edges; the p-value
    uses the Kolmogorov distribution with effective size n*m/(n+m) and Stephens' small-
    sample correction. Looking only at bin edges can miss the true supremum, so D is a
    lower bound of the exact statistic and the test is conservative (p-values too large).
    """
    ca, cb = _pair(counts_a, counts_b)
    n, m = ca.sum(), cb.sum()
    if n <= 0 or m <= 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(ca) / n - np.cumsum(cb) / m)))
    en = math.sqrt(n * m / (n + m))
    return d, kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def _pool_rare(table: FloatArray, min_expected: float) -> FloatArray:
    """Pool the columns of a 2 x k table whose expected count is below `min_expected`.

    All rare columns go into one pooled column; if that column is still rare it is
    folded into the remaining column with the smallest expected count.
    """
    col = table.sum(axis=0)
    row = table.sum(axis=1)
    total = row.sum()
    expected_min = np.outer(row, col).min(axis=0) / total
    rare = expected_min < min_expected
    if not rare.any():
        return table
    keep = table[:, ~rare]
    pooled = table[:, rare].sum(axis=1, keepdims=True)
    if pooled.sum() == 0:
        return keep
    pooled_expected = (row * pooled.sum() / total).min()
    if pooled_expected >= min_expected or keep.shape[1] == 0:
        return np.hstack([keep, pooled])
    keep_expected = np.outer(row, keep.sum(axis=0)).min(axis=0) / total
    j = int(np.argmin(keep_expected))
    keep = keep.copy()
    keep[:, j] += pooled[:, 0]
    return keep


def chi2_two_sample(
    counts_a: ArrayLike, counts_b: ArrayLike, min_expected: float = MIN_EXPECTED
) -> tuple[float, int, float]:
    """Chi-square test of homogeneity on a 2 x k table: (statistic, df, p-value).

    Columns empty on both sides are dropped; columns with an expected count below
    `min_expected` are pooled (see `_pool_rare`) so the chi-square approximation holds.
    Fewer than two columns left -> (0.0, 0, 1.0).
    """
    ca, cb = _pair(counts_a, counts_b)
    if ca.sum() <= 0 or cb.sum() <= 0:
        return 0.0, 0, 1.0
    table = np.vstack([ca, cb])
    table = table[:, table.sum(axis=0) > 0]
    table = _pool_rare(table, min_expected)
    k = table.shape[1]
    if k < 2:
        return 0.0, 0, 1.0
    row = table.sum(axis=1, keepdims=True)
    col = table.sum(axis=0, keepdims=True)
    expected = row * col / row.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, k - 1, chi2_sf(stat, k - 1)


def two_proportion_test(k1: float, n1: float, k2: float, n2: float) -> tuple[float, float]:
    """Two-sided pooled z-test for p1 == p2: (p2 - p1, p-value). Empty side -> (0.0, 1.0)."""
    if n1 <= 0 or n2 <= 0:
        return 0.0, 1.0
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0:
        return p2 - p1, 1.0
    z = abs(p2 - p1) / math.sqrt(var)
    return p2 - p1, min(1.0, 2.0 * norm_sf(z))


def welch_mean_test(
    n1: float, mean1: float, var1: float, n2: float, mean2: float, var2: float
) -> tuple[float, float]:
    """Two-sided large-sample Welch test for equal means from moments: (mean2 - mean1, p).

    Uses the normal approximation (both sides are hundreds of rows or more when the drift
    check trusts it). Zero variance on both sides -> p is 1 for equal means, 0 otherwise.
    """
    if n1 < 2 or n2 < 2:
        return mean2 - mean1, 1.0
    se2 = var1 / n1 + var2 / n2
    diff = mean2 - mean1
    if se2 <= 0:
        return diff, 1.0 if diff == 0 else 0.0
    return diff, min(1.0, 2.0 * norm_sf(abs(diff) / math.sqrt(se2)))


def unseen_share(known: Sequence[str], current: dict[str, int], current_other: int = 0) -> float:
    """Share of the current values that fall outside the baseline's `known` categories.

    `current_other` counts current values that were not kept by name (they are unseen too).
    """
    known_set = set(known)
    total = sum(current.values()) + current_other
    if total <= 0:
        return 0.0
    unseen = sum(v for k, v in current.items() if k not in known_set) + current_other
    return unseen / total


# --------------------------------------------------------------------------- multiple testing


def benjamini_hochberg(p_values: ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1).

    Reject hypothesis i at false-discovery rate q when adjusted[i] <= q.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p-values must be one-dimensional")
    m = p.size
    if m == 0:
        return p.copy()
    if np.any(np.isnan(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adj_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj_sorted, 1.0)
    return out
