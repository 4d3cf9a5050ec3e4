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
from dataclasses import dataclass
from typing import Any

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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def beta_inc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"beta_inc: a and b must be positive, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_bt = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return min(1.0, math.exp(log_bt) * _betacf(a, b, x) / a)
    return max(0.0, 1.0 - math.exp(log_bt) * _betacf(b, a, 1.0 - x) / b)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), via I_p(k, n - k + 1)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return beta_inc(float(k), float(n - k + 1), p)


# --------------------------------------------------------------------------- helpers


def _counts(c: ArrayLike) -> FloatArray:
    arr = np.asarray(c, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("counts must be one-dimensional")
    # One reduction checks both: a sum of non-negative numbers is finite iff all are.
    if arr.size and not (math.isfinite(arr.sum()) and arr.min() >= 0):
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
    return _psi(e, a, float(e.sum()), float(a.sum()), eps)


def _psi(e: FloatArray, a: FloatArray, ne: float, na: float, eps: float = PSI_EPSILON) -> float:
    if ne <= 0 or na <= 0:
        return 0.0
    pe = np.maximum(e / ne, eps)
    pa = np.maximum(a / na, eps)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def js_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon distance with log base 2 (0 = identical, 1 = disjoint supports).

    The square root of the JS divergence, so it is a metric; defined for empty bins.
    Returns 0.0 when either side is empty.
    """
    cp, cq = _pair(p, q)
    return _js(cp, cq, float(cp.sum()), float(cq.sum()))


def _js(cp: FloatArray, cq: FloatArray, np_: float, nq: float) -> float:
    if np_ <= 0 or nq <= 0:
        return 0.0
    pp = cp / np_
    pq = cq / nq
    m = 0.5 * (pp + pq)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(pp > 0, pp * np.log2(pp / m), 0.0)
        kl_q = np.where(pq > 0, pq * np.log2(pq / m), 0.0)
    div = 0.5 * float(kl_p.sum() + kl_q.sum())
    return math.sqrt(min(1.0, max(0.0, div)))


def _outer_ends(
    counts: FloatArray,
    edges: FloatArray,
    lo: float,
    hi: float,
    tail_means: tuple[float, float] | None,
) -> tuple[float, float]:
    """Where the two open outer bins end, so their mass can be spread evenly.

    With `tail_means` (the mean of the values in each outer bin) each becomes the interval
    whose uniform mass has that mean, [2*m0 - e0, e0] and [e_last, 2*m1 - e_last]; without
    them it is closed by the observed min / max. Means are far steadier than extremes (a
    window's max moves a lot from sample to sample, and would move W with it). A degenerate
    outer bin (all its mass on the edge, as with integer data) gets its neighbour's width.
    """
    e0, e1 = float(edges[0]), float(edges[-1])
    first_w = float(edges[1] - edges[0]) if edges.size > 1 else 1.0
    last_w = float(edges[-1] - edges[-2]) if edges.size > 1 else 1.0
    left = 2.0 * tail_means[0] - e0 if tail_means is not None else lo
    if not (math.isfinite(left) and left < e0):
        left = e0 - (first_w if first_w > 0 else 1.0) if counts[0] > 0 else e0
    right = 2.0 * tail_means[1] - e1 if tail_means is not None else hi
    if not (math.isfinite(right) and right > e1):
        right = e1 + (last_w if last_w > 0 else 1.0) if counts[-1] > 0 else e1
    return left, right


def _abs_area(d0: FloatArray, d1: FloatArray, w: FloatArray) -> float:
    """Integral of |linear interpolation between d0 and d1| over widths w (exact)."""
    same = d0 * d1 >= 0
    a0, a1 = np.abs(d0), np.abs(d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.where(a0 + a1 > 0, (d0 * d0 + d1 * d1) / (2.0 * (a0 + a1)), 0.0)
    area = np.where(same, 0.5 * (a0 + a1), cross) * w
    return float(area.sum())


def _ramp(t: float, x0: float, x1: float, f0: float, f1: float) -> float:
    """The linear CDF piece from (x0, f0) to (x1, f1), held flat outside [x0, x1]."""
    if t <= x0:
        return f0
    if t >= x1:
        return f1
    return f0 + (f1 - f0) * (t - x0) / (x1 - x0)


def _tail_area(knots: list[float], fa: Any, fb: Any) -> float:
    """Integral of |fa - fb| where both are linear between consecutive `knots` (few knots)."""
    xs = sorted(knots)
    ds = [fa(x) - fb(x) for x in xs]
    area = 0.0
    for x0, x1, d0, d1 in zip(xs, xs[1:], ds, ds[1:], strict=False):
        a0, a1 = abs(d0), abs(d1)
        if d0 * d1 >= 0:
            area += 0.5 * (a0 + a1) * (x1 - x0)
        else:
            area += (d0 * d0 + d1 * d1) / (2.0 * (a0 + a1)) * (x1 - x0)
    return area


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
    exactly: on the inner bins from the CDF gaps at the edges, on the two outer bins from
    the knots where each side's outer bin ends (`_outer_ends`: the tail means when given,
    else the observed min / max). Returns 0.0 when either side is empty.
    """
    ca, cb = _pair(counts_a, counts_b)
    e = np.asarray(edges, dtype=np.float64)
    if e.size != ca.size - 1:
        raise ValueError(f"{ca.size} bins need {ca.size - 1} edges, got {e.size}")
    na, nb = float(ca.sum()), float(cb.sum())
    if na <= 0 or nb <= 0:
        return 0.0
    fa = np.cumsum(ca)[:-1] / na  # CDF at each edge
    fb = np.cumsum(cb)[:-1] / nb
    return _wasserstein(ca, cb, fa, fb, e, range_a, range_b, tail_means_a, tail_means_b)


def _wasserstein(
    ca: FloatArray,
    cb: FloatArray,
    fa: FloatArray,
    fb: FloatArray,
    e: FloatArray,
    range_a: tuple[float, float],
    range_b: tuple[float, float],
    tail_means_a: tuple[float, float] | None,
    tail_means_b: tuple[float, float] | None,
) -> float:
    if e.size == 0:  # one bin each: uniform on [min, max]
        la, ua = range_a
        lb, ub = range_b
        ua, ub = (ua if ua > la else la + 1.0), (ub if ub > lb else lb + 1.0)
        return _tail_area(
            [la, ua, lb, ub],
            lambda t: _ramp(t, la, ua, 0.0, 1.0),
            lambda t: _ramp(t, lb, ub, 0.0, 1.0),
        )
    d = fa - fb
    inner = _abs_area(d[:-1], d[1:], np.diff(e)) if e.size > 1 else 0.0
    la, ra = _outer_ends(ca, e, range_a[0], range_a[1], tail_means_a)
    lb, rb = _outer_ends(cb, e, range_b[0], range_b[1], tail_means_b)
    e0, e1 = float(e[0]), float(e[-1])
    fa0, fb0, fa1, fb1 = float(fa[0]), float(fb[0]), float(fa[-1]), float(fb[-1])
    left = _tail_area(
        [la, lb, e0],
        lambda t: _ramp(t, la, e0, 0.0, fa0),
        lambda t: _ramp(t, lb, e0, 0.0, fb0),
    )
    right = _tail_area(
        [e1, ra, rb],
        lambda t: _ramp(t, e1, ra, fa1, 1.0),
        lambda t: _ramp(t, e1, rb, fb1, 1.0),
    )
    return inner + left + right


@dataclass(frozen=True)
class BinnedComparison:
    """Every statistic of two numeric histograms on the same bins (see the functions)."""

    psi: float
    ks: float
    ks_p_value: float
    chi2: float
    chi2_p_value: float
    wasserstein: float


def compare_binned(
    counts_a: ArrayLike,
    counts_b: ArrayLike,
    edges: ArrayLike,
    range_a: tuple[float, float],
    range_b: tuple[float, float],
    tail_means_a: tuple[float, float] | None = None,
    tail_means_b: tuple[float, float] | None = None,
    min_expected: float = MIN_EXPECTED,
) -> BinnedComparison:
    """psi, ks_binned, chi2_two_sample and wasserstein_binned at once, sharing the work
    (the drift check calls this for every feature of every window). Both sides non-empty."""
    ca, cb = _pair(counts_a, counts_b)
    e = np.asarray(edges, dtype=np.float64)
    if e.size != ca.size - 1:
        raise ValueError(f"{ca.size} bins need {ca.size - 1} edges, got {e.size}")
    na, nb = float(ca.sum()), float(cb.sum())
    if na <= 0 or nb <= 0:
        raise ValueError("compare_binned needs two non-empty histograms")
    fa = np.cumsum(ca) / na
    fb = np.cumsum(cb) / nb
    ks, ks_p = _ks(fa - fb, na, nb)
    chi2, _, chi2_p = _chi2(ca, cb, min_expected)
    w = _wasserstein(ca, cb, fa[:-1], fb[:-1], e, range_a, range_b, tail_means_a, tail_means_b)
    return BinnedComparison(
        psi=_psi(ca, cb, na, nb),
        ks=ks,
        ks_p_value=ks_p,
        chi2=chi2,
        chi2_p_value=chi2_p,
        wasserstein=w,
    )


# --------------------------------------------------------------------------- two-sample tests


def ks_binned(counts_a: ArrayLike, counts_b: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on binned CDFs: (D, p-value).

    D is the largest gap between the two cumulative shares at the bin edges; the p-value
    uses the Kolmogorov distribution with effective size n*m/(n+m) and Stephens' small-
    sample correction. Looking only at bin edges can miss the true supremum, so D is a
    lower bound of the exact statistic and the test is conservative (p-values too large).
    """
    ca, cb = _pair(counts_a, counts_b)
    n, m = float(ca.sum()), float(cb.sum())
    if n <= 0 or m <= 0:
        return 0.0, 1.0
    return _ks(np.cumsum(ca) / n - np.cumsum(cb) / m, n, m)


def _ks(cdf_gap: FloatArray, n: float, m: float) -> tuple[float, float]:
    d = float(np.max(np.abs(cdf_gap)))
    en = math.sqrt(n * m / (n + m))
    return d, kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def _pool_rare(a: FloatArray, b: FloatArray, min_expected: float) -> tuple[FloatArray, FloatArray]:
    """Pool the columns of the 2 x k table (a; b) whose expected count is below `min_expected`.

    All rare columns go into one pooled column; if that column is still rare it is
    folded into the remaining column with the smallest expected count.
    """
    ra, rb = a.sum(), b.sum()
    factor = min(ra, rb) / (ra + rb)  # expected count of the smaller row per column total
    col = a + b
    rare = col * factor < min_expected
    if not rare.any():
        return a, b
    keep = ~rare
    ka, kb = a[keep], b[keep]
    pa, pb = float(a[rare].sum()), float(b[rare].sum())
    if pa + pb == 0:
        return ka, kb
    if (pa + pb) * factor >= min_expected or ka.size == 0:
        return np.append(ka, pa), np.append(kb, pb)
    j = int(np.argmin(ka + kb))
    ka, kb = ka.copy(), kb.copy()
    ka[j] += pa
    kb[j] += pb
    return ka, kb


def chi2_two_sample(
    counts_a: ArrayLike, counts_b: ArrayLike, min_expected: float = MIN_EXPECTED
) -> tuple[float, int, float]:
    """Chi-square test of homogeneity on a 2 x k table: (statistic, df, p-value).

    Columns empty on both sides are dropped; columns with an expected count below
    `min_expected` are pooled (see `_pool_rare`) so the chi-square approximation holds.
    Fewer than two columns left -> (0.0, 0, 1.0).
    """
    ca, cb = _pair(counts_a, counts_b)
    return _chi2(ca, cb, min_expected)


def _chi2(ca: FloatArray, cb: FloatArray, min_expected: float) -> tuple[float, int, float]:
    ra, rb = ca.sum(), cb.sum()
    if ra <= 0 or rb <= 0:
        return 0.0, 0, 1.0
    nonzero = (ca + cb) > 0
    a, b = _pool_rare(ca[nonzero], cb[nonzero], min_expected)
    k = a.size
    if k < 2:
        return 0.0, 0, 1.0
    # For two rows the statistic is sum_j (a_j rb - b_j ra)^2 / (ra rb (a_j + b_j)).
    stat = float(np.sum((a * rb - b * ra) ** 2 / (a + b)) / (ra * rb))
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


def conditional_count_test(
    k1: int, n1: int, k2: int, n2: int, alternative: str = "two-sided"
) -> float:
    """Exact test that two samples share a rate, given the events k1 of n1 and k2 of n2.

    Conditional on the total k1 + k2, k2 is Binomial(k1 + k2, n2 / (n1 + n2)) when the
    counts are Poisson; for binomial counts this is a slightly conservative version of
    Fisher's exact test. Unlike the z-test it stays valid for a handful of events (a
    category the baseline never saw, a feature that was never missing), where the normal
    approximation would turn one stray row into a tiny p-value.
    `alternative`: "two-sided" or "greater" (the second sample's rate is higher).
    """
    if n1 <= 0 or n2 <= 0:
        return 1.0
    total = int(k1) + int(k2)
    if total == 0:
        return 1.0
    share = n2 / (n1 + n2)
    upper = binom_sf(int(k2), total, share)
    if alternative == "greater":
        return upper
    if alternative != "two-sided":
        raise ValueError(f"alternative must be 'two-sided' or 'greater', got {alternative!r}")
    lower = 1.0 - binom_sf(int(k2) + 1, total, share)
    return min(1.0, 2.0 * min(upper, lower))


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
