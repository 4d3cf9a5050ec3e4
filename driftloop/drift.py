"""The drift verdict: compare a window's profile with the baseline, feature by feature.

Why this module exists: it turns the raw statistics of `driftloop.stats` into one
decision a retraining workflow can act on, with a false-alarm rate that stays low at
every window size. The rule (documented with measured rates in docs/statistics.md):

* every feature gets an effect size (normalised Wasserstein for numeric features, Jensen-
  Shannon distance and the share of unseen categories for categorical ones, the change of
  the missing rate for both) and a p-value from TWO-sample tests (binned KS, binned chi-
  square and a Welch test on the means for numeric features, chi-square and an exact test
  of the unseen share for categorical ones, a two-proportion test for the missing rate),
  combined per feature by Bonferroni;
* p-values are adjusted by Benjamini-Hochberg across the features;
* a feature drifts when an effect passes its threshold AND its adjusted p-value is at most
  `fdr`: a large window cannot flag a trivial difference, a small window cannot flag noise;
* the dataset drifts when at least `drift_share` of the features drift (default: any one),
  or any critical feature drifts; below `min_rows` rows the verdict is "insufficient_data"
  and never drift.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from driftloop import stats
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.profile import (
    CategoricalProfile,
    DatasetProfile,
    FeatureProfile,
    NumericProfile,
    empty_profile,
    profile_batch,
)

REPORT_SCHEMA_VERSION = 1
NUMERIC_METHODS = ("wasserstein", "psi")
CATEGORICAL_METHODS = ("jensen_shannon", "psi")
#: Unseen category names listed per feature in the report.
MAX_UNSEEN_LISTED = 10


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds and rules of the drift verdict. Defaults are justified in docs/statistics.md.

    fdr: Benjamini-Hochberg false-discovery rate across features (the significance gate).
    numeric_threshold: normalised Wasserstein distance (in baseline standard deviations).
    categorical_threshold: Jensen-Shannon distance, log base 2 (0..1).
    unseen_threshold: share of a window's values in categories the baseline never saw
        (beyond the baseline's own "other" share).
    missing_threshold: absolute change of the missing rate (0.05 = 5 percentage points).
    psi_threshold: PSI threshold, used when a method is "psi".
    min_rows: fewer rows than this -> status "insufficient_data", never drift.
    drift_share: the dataset drifts when at least this share of features drift
        (0 = any single feature).
    critical_features: features whose drift alone makes the dataset drift.
    numeric_method: "wasserstein" (default) or "psi" as the numeric effect size.
    categorical_method: "jensen_shannon" (default) or "psi".
    count_prediction_drift: include the model output in the BH family and let its drift
        make the dataset drift (it is always reported).
    """

    fdr: float = 0.01
    numeric_threshold: float = 0.05
    categorical_threshold: float = 0.1
    unseen_threshold: float = 0.01
    missing_threshold: float = 0.05
    psi_threshold: float = 0.2
    min_rows: int = 200
    drift_share: float = 0.0
    critical_features: tuple[str, ...] = ()
    numeric_method: str = "wasserstein"
    categorical_method: str = "jensen_shannon"
    count_prediction_drift: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.fdr < 1.0:
            problems.append(f"fdr must be in (0, 1), got {self.fdr}")
        for name in (
            "numeric_threshold",
            "categorical_threshold",
            "unseen_threshold",
            "missing_threshold",
            "psi_threshold",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, got {value}")
        if self.min_rows < 1:
            problems.append(f"min_rows must be at least 1, got {self.min_rows}")
        if not 0.0 <= self.drift_share <= 1.0:
            problems.append(f"drift_share must be in [0, 1], got {self.drift_share}")
        if self.numeric_method not in NUMERIC_METHODS:
            problems.append(
                f"numeric_method must be one of {NUMERIC_METHODS}, got {self.numeric_method!r}"
            )
        if self.categorical_method not in CATEGORICAL_METHODS:
            problems.append(
                f"categorical_method must be one of {CATEGORICAL_METHODS}, "
                f"got {self.categorical_method!r}"
            )
        if problems:
            raise DriftloopError("drift config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "drift config") -> DriftConfig:
        """Build from JSON (e.g. the DRIFT_CONFIG environment variable); unknown keys are errors."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise DriftloopError(f"{where}: expected a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DriftloopError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            try:
                kwargs[key] = _coerce_setting(getattr(cls(), key), value)
            except TypeError as exc:
                raise DriftloopError(f"{where}: {key}: {exc}, got {value!r}") from exc
        try:
            return cls(**kwargs)
        except DriftloopError as exc:
            raise DriftloopError(f"{where}: {str(exc).removeprefix('drift config: ')}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["critical_features"] = list(self.critical_features)
        return d


def _coerce_setting(default: Any, value: Any) -> Any:
    """`value` checked against the type of the field's default (TypeError when it does not fit)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if isinstance(default, int | float) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise TypeError("expected a number")
    if isinstance(default, int):
        if value != int(value):
            raise TypeError("expected an integer")
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise TypeError("expected a list of feature names")
        return tuple(value)
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


@dataclass
class FeatureDrift:
    """The comparison of one feature (or of the model output)."""

    name: str
    kind: str
    drift: bool
    method: str
    score: float | None
    threshold: float
    p_value: float
    p_value_adjusted: float
    n: int
    n_baseline: int
    psi: float | None = None
    ks: float | None = None
    ks_p_value: float | None = None
    chi2_p_value: float | None = None
    mean_p_value: float | None = None
    wasserstein: float | None = None
    mean_shift: float | None = None
    js_distance: float | None = None
    unseen_share: float | None = None
    unseen_p_value: float | None = None
    unseen_categories: list[str] = field(default_factory=list)
    missing_rate_baseline: float = 0.0
    missing_rate_current: float = 0.0
    missing_p_value: float = 1.0
    reasons: list[str] = field(default_factory=list)
    effect: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        d.pop("effect")
        for key, value in d.items():
            if isinstance(value, float) and not math.isfinite(value):
                d[key] = None
        return d


@dataclass
class DriftReport:
    """The verdict of one comparison; `to_dict()` is the JSON report (docs/report-schema.md)."""

    dataset_drift: bool
    status: str
    reason: str
    n_rows: int
    n_baseline_rows: int
    n_malformed: int
    n_features: int
    n_drifted: int
    drift_share: float
    drifted_features: list[str]
    features: dict[str, FeatureDrift]
    prediction_drift: FeatureDrift | None
    missing_features: list[str]
    config: DriftConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "dataset_drift": self.dataset_drift,
            "status": self.status,
            "reason": self.reason,
            "n_rows": self.n_rows,
            "n_baseline_rows": self.n_baseline_rows,
            "n_malformed": self.n_malformed,
            "n_features": self.n_features,
            "n_drifted": self.n_drifted,
            "drift_share": self.drift_share,
            "drifted_features": list(self.drifted_features),
            "missing_features": list(self.missing_features),
            "config": self.config.to_dict(),
            "prediction_drift": self.prediction_drift.to_dict() if self.prediction_drift else None,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "js_log_base": 2,
        }


# --------------------------------------------------------------------------- per feature


def _missing_part(
    base_missing: int, base_n: int, cur_missing: int, cur_n: int, config: DriftConfig
) -> tuple[float, float, float, bool]:
    rb = base_missing / base_n if base_n else 0.0
    rc = cur_missing / cur_n if cur_n else 0.0
    pooled = (base_missing + cur_missing) / (base_n + cur_n) if base_n + cur_n else 0.0
    expected = min(base_n, cur_n) * min(pooled, 1.0 - pooled)
    if expected >= stats.MIN_EXPECTED:
        _, p = stats.two_proportion_test(base_missing, base_n, cur_missing, cur_n)
    else:  # too few events (or non-events) for the normal approximation
        p = stats.conditional_count_test(base_missing, base_n, cur_missing, cur_n)
    return rb, rc, p, abs(rc - rb) >= config.missing_threshold


def _undecided(
    name: str,
    kind: str,
    method: str,
    threshold: float,
    nb: int,
    nc: int,
    rb: float,
    rc: float,
    p_miss: float,
) -> FeatureDrift:
    """A feature's result before its distribution tests: not drifted, p-values 1."""
    return FeatureDrift(
        name=name,
        kind=kind,
        drift=False,
        method=method,
        score=None,
        threshold=threshold,
        p_value=1.0,
        p_value_adjusted=1.0,
        n=nc,
        n_baseline=nb,
        missing_rate_baseline=rb,
        missing_rate_current=rc,
        missing_p_value=p_miss,
    )


def _compare_numeric(
    name: str, b: NumericProfile, c: NumericProfile, config: DriftConfig
) -> FeatureDrift:
    if not np.array_equal(b.edges, c.edges):
        raise DriftloopError(f"drift: feature {name!r} was not profiled on the baseline's bins")
    nb, nc = b.n_present, c.n_present
    rb, rc, p_miss, miss_effect = _missing_part(
        b.n_missing + b.n_invalid, b.n, c.n_missing + c.n_invalid, c.n, config
    )
    method = config.numeric_method
    threshold = config.numeric_threshold if method == "wasserstein" else config.psi_threshold
    out = _undecided(name, "numeric", method, threshold, nb, nc, rb, rc, p_miss)
    p_dist = 1.0
    dist_effect = False
    if nb > 0 and nc > 0:
        scale = b.std if b.std > 0 else 1.0
        # Outer bins are closed by tail means only when both sides know them (a baseline
        # imported from Model Monitor does not), so both are modelled the same way.
        tb, tc = b.tail_means, c.tail_means
        if tb is None or tc is None:
            tb = tc = None
        res = stats.compare_binned(
            b.counts, c.counts, b.edges, (b.min, b.max), (c.min, c.max), tb, tc
        )
        shift = abs(c.mean - b.mean) / scale
        # W1 is never below the difference of the means, so the larger of the binned W1
        # and the exact mean shift is the better estimate (bins hide sub-bin shifts).
        out.wasserstein = max(res.wasserstein / scale, shift)
        out.mean_shift = shift
        out.psi = res.psi
        out.ks, out.ks_p_value = res.ks, res.ks_p_value
        out.chi2_p_value = res.chi2_p_value
        var_b = b.m2 / (nb - 1) if nb > 1 else 0.0
        var_c = c.m2 / (nc - 1) if nc > 1 else 0.0
        _, out.mean_p_value = stats.welch_mean_test(nb, b.mean, var_b, nc, c.mean, var_c)
        p_dist = min(1.0, 3.0 * min(out.ks_p_value, out.chi2_p_value, out.mean_p_value))
        out.score = out.wasserstein if method == "wasserstein" else out.psi
        dist_effect = out.score >= threshold
    out.p_value = min(1.0, 2.0 * min(p_dist, p_miss))
    if dist_effect:
        out.reasons.append("distribution")
    if miss_effect:
        out.reasons.append("missing_rate")
    out.effect = dist_effect or miss_effect
    return out


def _category_vectors(
    b: CategoricalProfile, c: CategoricalProfile
) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Baseline and current counts over the baseline's categories plus one "other" column
    (the baseline's tail + everything the baseline did not list by name)."""
    names = sorted(b.counts)
    base = np.array([b.counts[k] for k in names] + [b.other], dtype=np.float64)
    known = set(names)
    unseen = {k: v for k, v in c.counts.items() if k not in known}
    cur_other = sum(unseen.values()) + c.other
    cur = np.array([c.counts.get(k, 0) for k in names] + [cur_other], dtype=np.float64)
    listed = sorted(unseen, key=lambda k: (-unseen[k], k))[:MAX_UNSEEN_LISTED]
    return base, cur, listed, cur_other


def _compare_categorical(
    name: str, b: CategoricalProfile, c: CategoricalProfile, config: DriftConfig
) -> FeatureDrift:
    nb, nc = b.n_present, c.n_present
    rb, rc, p_miss, miss_effect = _missing_part(b.n_missing, b.n, c.n_missing, c.n, config)
    method = config.categorical_method
    threshold = config.categorical_threshold if method == "jensen_shannon" else config.psi_threshold
    out = _undecided(name, "categorical", method, threshold, nb, nc, rb, rc, p_miss)
    p_dist = 1.0
    dist_effect = unseen_effect = False
    if nb > 0 and nc > 0:
        base, cur, listed, cur_other = _category_vectors(b, c)
        out.js_distance = stats.js_distance(base, cur)
        out.psi = stats.psi(base, cur)
        _, _, out.chi2_p_value = stats.chi2_two_sample(base, cur)
        # Values outside the baseline's named categories, beyond the share the baseline's
        # own "other" bucket leads us to expect (0 when the baseline listed every category).
        excess = cur_other / nc - b.other / nb
        out.unseen_share = max(0.0, excess)
        out.unseen_categories = listed
        # The chi-square pools a column the baseline never filled (its expected count is
        # tiny), so unseen values get their own exact one-sided test.
        out.unseen_p_value = stats.conditional_count_test(
            b.other, nb, cur_other, nc, alternative="greater"
        )
        out.score = out.js_distance if method == "jensen_shannon" else out.psi
        dist_effect = out.score >= threshold
        unseen_effect = out.unseen_share >= config.unseen_threshold
        p_dist = min(1.0, 2.0 * min(out.chi2_p_value, out.unseen_p_value))
    out.p_value = min(1.0, 2.0 * min(p_dist, p_miss))
    if dist_effect:
        out.reasons.append("distribution")
    if unseen_effect:
        out.reasons.append("unseen_categories")
    if miss_effect:
        out.reasons.append("missing_rate")
    out.effect = dist_effect or unseen_effect or miss_effect
    return out


def _all_missing_like(b: FeatureProfile, n_rows: int) -> FeatureProfile:
    if isinstance(b, NumericProfile):
        prof = b.empty_like()
        prof.n = prof.n_missing = n_rows
        return prof
    return CategoricalProfile(counts={}, n_missing=n_rows, known=frozenset(b.counts))


def _compare_feature(
    name: str, b: FeatureProfile, c: FeatureProfile, config: DriftConfig
) -> FeatureDrift:
    if isinstance(b, NumericProfile) and isinstance(c, NumericProfile):
        return _compare_numeric(name, b, c, config)
    if isinstance(b, CategoricalProfile) and isinstance(c, CategoricalProfile):
        return _compare_categorical(name, b, c, config)
    raise DriftloopError(f"drift: feature {name!r} is {b.kind} in the baseline but {c.kind} now")


# --------------------------------------------------------------------------- verdict


def _reason(
    status: str,
    n_rows: int,
    config: DriftConfig,
    drifted: list[str],
    needed: int,
    n_features: int,
    critical: list[str],
    prediction: bool,
) -> str:
    if status == "insufficient_data":
        return f"{n_rows} rows in the window, fewer than min_rows={config.min_rows}: no verdict"
    if not drifted and not prediction:
        return f"no feature drifted ({n_features} checked)"
    parts = []
    if drifted:
        shown = ", ".join(drifted[:5]) + (", ..." if len(drifted) > 5 else "")
        parts.append(f"{len(drifted)} of {n_features} features drifted ({shown}); {needed} needed")
    if critical:
        parts.append(f"critical feature(s) drifted: {', '.join(critical)}")
    if prediction:
        parts.append("the model output drifted")
    return "; ".join(parts)


def compare(
    baseline: DatasetProfile, current: DatasetProfile, config: DriftConfig | None = None
) -> DriftReport:
    """Compare a window's profile (made on `baseline`) with the baseline: the drift verdict."""
    config = config or DriftConfig()
    names = list(baseline.schema.features)
    unknown_critical = sorted(set(config.critical_features) - set(names))
    if unknown_critical:
        raise DriftloopError(
            f"drift config: critical_features not in the baseline: {unknown_critical}"
        )
    results: dict[str, FeatureDrift] = {}
    missing_features: list[str] = []
    for name in names:
        b = baseline.features[name]
        c = current.features.get(name)
        if c is None:
            missing_features.append(name)
            c = _all_missing_like(b, current.n_rows)
        results[name] = _compare_feature(name, b, c, config)

    prediction: FeatureDrift | None = None
    if baseline.predictions is not None and current.predictions is not None:
        prediction = _compare_numeric(
            "predictions", baseline.predictions, current.predictions, config
        )

    family: list[FeatureDrift] = [results[n] for n in names]
    if prediction is not None and config.count_prediction_drift:
        family.append(prediction)
    adjusted = stats.benjamini_hochberg([f.p_value for f in family])
    for f, adj in zip(family, adjusted, strict=True):
        f.p_value_adjusted = float(adj)
    if prediction is not None and not config.count_prediction_drift:
        prediction.p_value_adjusted = prediction.p_value  # a family of one

    status = "ok" if current.n_rows >= config.min_rows else "insufficient_data"
    for f in [*family, *([prediction] if prediction is not None else [])]:
        f.drift = status == "ok" and f.effect and f.p_value_adjusted <= config.fdr

    drifted = [n for n in names if results[n].drift]
    n_features = len(names)
    needed = max(1, math.ceil(config.drift_share * n_features - 1e-9))
    critical = [n for n in config.critical_features if results[n].drift]
    prediction_counts = bool(prediction and prediction.drift and config.count_prediction_drift)
    dataset_drift = status == "ok" and (
        len(drifted) >= needed or bool(critical) or prediction_counts
    )
    return DriftReport(
        dataset_drift=dataset_drift,
        status=status,
        reason=_reason(
            status, current.n_rows, config, drifted, needed, n_features, critical, prediction_counts
        ),
        n_rows=current.n_rows,
        n_baseline_rows=baseline.n_rows,
        n_malformed=current.n_malformed,
        n_features=n_features,
        n_drifted=len(drifted),
        drift_share=len(drifted) / n_features if n_features else 0.0,
        drifted_features=drifted,
        features=results,
        prediction_drift=prediction,
        missing_features=missing_features,
        config=config,
    )


def check_sources(
    baseline: DatasetProfile,
    sources: Sequence[str | Path] | Iterable[str | Path],
    config: DriftConfig | None = None,
    *,
    malformed: MalformedLog | None = None,
) -> tuple[DriftReport, DatasetProfile]:
    """Profile capture files (``*.jsonl``, folders walked) or tables (.csv/.parquet) on the
    baseline, merge them and compare: (report, the window's profile).

    Malformed records are counted in `malformed` (a fresh ledger when None) and in the
    report's `n_malformed`; an unreadable source is a DriftloopError naming it.
    """
    from driftloop.capture import iter_capture_paths, read_capture

    log = malformed if malformed is not None else MalformedLog()
    current = empty_profile(baseline)
    for raw in sources:
        path = Path(raw)
        if path.is_dir():
            files = list(iter_capture_paths(path))
        elif path.exists():
            files = [path]
        else:
            raise DriftloopError(f"{path}: no such file or folder")
        for file in files:
            if file.suffix.lower() in (".csv", ".parquet", ".pq"):
                tables = importlib.import_module("driftloop.tables")
                batches = tables.read_table(
                    file, schema=baseline.schema, malformed=log, name=str(file)
                )
            else:
                batches = read_capture(file, schema=baseline.schema, malformed=log, name=str(file))
            for batch in batches:
                current = current.merge(profile_batch(batch, baseline))
    current.n_malformed = log.total
    return compare(baseline, current, config), current
