"""Synthetic loan-default data with a clock, for the local loop, the tests and the demo.

driftloop needs a model whose world changes on cue: a stable period, then covariate
shift, concept drift or a new category, with labels that arrive days after the
prediction (as they do for loans). Everything here is vectorised numpy and seeded, so
50k rows take milliseconds and the same seed always gives the same rows.

    python -m training.datagen --out data/ --rows 20000 --seed 7

writes `train.csv`, `validation.csv`, `holdout.csv` (header row, target last) and
`schema.json` (the driftloop Schema: the request column order).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "default"
NUMERIC_FEATURES: tuple[str, ...] = (
    "age",
    "income",
    "loan_amount",
    "credit_score",
    "debt_to_income",
    "employment_years",
    "num_open_accounts",
    "num_delinquencies",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("purpose", "home_ownership", "region", "employment_type")
# The order of the columns in an endpoint request (CSV has no header).
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES

PURPOSES: tuple[str, ...] = (
    "debt_consolidation",
    "home_improvement",
    "car",
    "education",
    "medical",
    "small_business",
)
PURPOSE_P = (0.38, 0.16, 0.18, 0.09, 0.09, 0.10)
NEW_PURPOSE = "crypto_investment"  # appears in the "new_category" scenario only
HOME_OWNERSHIP: tuple[str, ...] = ("rent", "mortgage", "own")
HOME_OWNERSHIP_P = (0.42, 0.43, 0.15)
REGIONS: tuple[str, ...] = ("north", "south", "east", "west")
REGION_P = (0.27, 0.31, 0.22, 0.20)
EMPLOYMENT_TYPES: tuple[str, ...] = ("salaried", "self_employed", "contract", "retired")
EMPLOYMENT_TYPE_P = (0.64, 0.14, 0.14, 0.08)

# Log-odds effects of the categories on default (0 for the reference level).
PURPOSE_EFFECT = {
    "debt_consolidation": 0.25,
    "home_improvement": -0.25,
    "car": -0.15,
    "education": 0.1,
    "medical": 0.35,
    "small_business": 0.6,
    NEW_PURPOSE: 1.2,
}
HOME_EFFECT = {"rent": 0.3, "mortgage": 0.0, "own": -0.35}
REGION_EFFECT = {"north": -0.1, "south": 0.15, "east": 0.0, "west": -0.05}
EMPLOYMENT_EFFECT = {"salaried": -0.15, "self_employed": 0.35, "contract": 0.3, "retired": 0.05}

SCENARIOS: tuple[str, ...] = ("stable", "covariate_shift", "concept_drift", "new_category")
DEFAULT_START = datetime(2026, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 (the SageMaker image may run Python < 3.11)


@dataclass(frozen=True)
class Regime:
    """How the world looks on one side of the change day (the stable world is `Regime()`)."""

    income_log_shift: float = 0.0  # covariate shift: log-income moves
    credit_shift: float = 0.0  # covariate shift: credit scores move
    dti_weight: float = 5.0  # concept drift: debt-to-income matters this much (log-odds per unit)
    credit_weight: float = -0.016  # log-odds per credit-score point
    delinquency_weight: float = 0.35  # log-odds per past delinquency
    loan_ratio_weight: float = 0.7  # log-odds per unit of log(loan / income)
    mortgage_effect: float = 0.0  # concept drift: variable-rate mortgages get riskier
    intercept: float = -1.55
    new_purpose_share: float = 0.0  # new category: share of requests with NEW_PURPOSE


STABLE = Regime()
SHIFTED: dict[str, Regime] = {
    "stable": STABLE,
    # Borrowers get poorer and riskier-looking; P(default | x) is unchanged.
    "covariate_shift": Regime(income_log_shift=-0.35, credit_shift=-45.0),
    # A rate shock: repayments jump, so leverage dominates and credit history counts for
    # less; mortgages (variable rate) turn risky. The old model's ranking decays.
    "concept_drift": Regime(
        dti_weight=12.0,
        credit_weight=-0.002,
        delinquency_weight=0.05,
        loan_ratio_weight=0.2,
        mortgage_effect=1.5,
        intercept=-2.5,
    ),
    "new_category": Regime(new_purpose_share=0.15),
}


def combine(*scenarios: str) -> Regime:
    """One regime with every change of the named scenarios (e.g. covariate + concept drift)."""
    changes: dict[str, float] = {}
    for name in scenarios:
        _check_scenario(name)
        regime = SHIFTED[name]
        for key in Regime.__dataclass_fields__:
            if getattr(regime, key) != getattr(STABLE, key):
                changes[key] = getattr(regime, key)
    return Regime(**changes)


def schema_dict() -> dict[str, object]:
    """The driftloop Schema of this data set (see driftloop.schema.Schema.to_dict)."""
    return {
        "features": list(FEATURES),
        "categorical": list(CATEGORICAL_FEATURES),
        "target": TARGET,
        "problem": "binary",
    }


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


def _choice(
    rng: np.random.Generator, values: Sequence[str], p: Sequence[float], n: int
) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=np.asarray(p))]


def _lookup(values: np.ndarray, effects: dict[str, float]) -> np.ndarray:
    out = np.zeros(len(values))
    for key, effect in effects.items():
        out[values == key] = effect
    return out


def _sample(rng: np.random.Generator, shifted: np.ndarray, regime: Regime) -> pd.DataFrame:
    """One row per entry of `shifted`: True rows follow `regime`, the others STABLE."""
    n = len(shifted)

    def per_row(field: str) -> np.ndarray:
        return np.where(shifted, getattr(regime, field), getattr(STABLE, field))

    age = np.clip(rng.normal(42.0, 12.0, n), 18, 85).round()
    employment_type = _choice(rng, EMPLOYMENT_TYPES, EMPLOYMENT_TYPE_P, n)
    employment_type[age >= 66] = "retired"
    employment_years = np.minimum(rng.gamma(2.0, 3.5, n), np.maximum(age - 18, 0)).round(1)
    log_income = (
        10.9
        + 0.012 * (np.minimum(age, 60) - 40)
        + rng.normal(0.0, 0.45, n)
        + per_row("income_log_shift")
    )
    income = np.exp(log_income).round(-2)
    loan_amount = np.clip(income * rng.lognormal(-1.6, 0.55, n), 1000, 250000).round(-2)
    credit_score = np.clip(
        rng.normal(690.0, 60.0, n) + 1.5 * employment_years + per_row("credit_shift"), 300, 850
    ).round()
    debt_to_income = np.clip(rng.beta(2.2, 6.0, n) + 0.08 * loan_amount / income, 0.0, 1.5).round(3)
    num_open_accounts = rng.poisson(np.clip(3.0 + age / 12.0, 1, None), n).astype(float)
    num_delinquencies = rng.poisson(np.clip((720.0 - credit_score) / 120.0, 0.05, None), n)
    purpose = _choice(rng, PURPOSES, PURPOSE_P, n)
    new_share = per_row("new_purpose_share")
    purpose[rng.random(n) < new_share] = NEW_PURPOSE
    home_ownership = _choice(rng, HOME_OWNERSHIP, HOME_OWNERSHIP_P, n)
    region = _choice(rng, REGIONS, REGION_P, n)

    logit = (
        per_row("intercept")
        + per_row("credit_weight") * (credit_score - 690.0)
        + per_row("dti_weight") * (debt_to_income - 0.3)
        + per_row("loan_ratio_weight") * np.log(loan_amount / income / 0.2)
        + per_row("delinquency_weight") * num_delinquencies
        - 0.04 * employment_years
        + 0.0008 * (age - 45.0) ** 2  # young and old borrowers default more
        + _lookup(purpose, PURPOSE_EFFECT)
        + _lookup(home_ownership, HOME_EFFECT)
        + np.where(home_ownership == "mortgage", per_row("mortgage_effect"), 0.0)
        + _lookup(region, REGION_EFFECT)
        + _lookup(employment_type, EMPLOYMENT_EFFECT)
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(
        {
            "age": age,
            "income": income,
            "loan_amount": loan_amount,
            "credit_score": credit_score,
            "debt_to_income": debt_to_income,
            "employment_years": employment_years,
            "num_open_accounts": num_open_accounts,
            "num_delinquencies": num_delinquencies.astype(float),
            "purpose": purpose,
            "home_ownership": home_ownership,
            "region": region,
            "employment_type": employment_type,
            TARGET: label,
        }
    )


def sample(rng: np.random.Generator, shifted: np.ndarray, regime: Regime) -> pd.DataFrame:
    """Public form of the row sampler: FEATURES + `default`, one row per entry of `shifted`."""
    return _sample(rng, np.asarray(shifted, dtype=bool), regime)


def generate_timeline(
    days: int,
    requests_per_day: int,
    seed: int,
    scenario: str = "stable",
    *,
    change_day: int | None = None,
    start: datetime = DEFAULT_START,
    label_delay_days: tuple[float, float] = (1.0, 3.0),
) -> pd.DataFrame:
    """Requests over `days` days from `start`, sorted by time, one row per request.

    Columns: `record_id` (unique, usable as the InferenceId), `request_time` and
    `label_time` (tz-aware UTC; the label arrives uniformly 1-3 days later by default),
    `day` (0-based), the FEATURES, and the true label `default`. The scenario's change
    applies to requests on or after `change_day` (default: half way).
    """
    _check_scenario(scenario)
    if days < 1 or requests_per_day < 1:
        raise ValueError("days and requests_per_day must be positive")
    change = days // 2 if change_day is None else change_day
    rng = np.random.default_rng(seed)
    n = days * requests_per_day
    day = np.repeat(np.arange(days), requests_per_day)
    # Seconds within the day, sorted so each day's requests come in time order.
    seconds = np.sort(rng.uniform(0, 86400, (days, requests_per_day)), axis=1).ravel()
    frame = _sample(rng, day >= change, SHIFTED[scenario])
    offsets = pd.to_timedelta(day * 86400 + seconds, unit="s")
    request_time = pd.Timestamp(start) + offsets
    lo, hi = label_delay_days
    label_time = request_time + pd.to_timedelta(rng.uniform(lo, hi, n) * 86400, unit="s")
    frame.insert(0, "day", day)
    frame.insert(0, "label_time", label_time)
    frame.insert(0, "request_time", request_time)
    frame.insert(0, "record_id", [f"req-{seed}-{i:08d}" for i in range(n)])
    return frame


def training_set(
    n: int, seed: int, as_of_day: int = 0, scenario: str = "stable", *, change_day: int = 0
) -> pd.DataFrame:
    """`n` labelled rows (FEATURES + `default`) drawn from the world as it is on `as_of_day`."""
    _check_scenario(scenario)
    if n < 1:
        raise ValueError("n must be positive")
    rng = np.random.default_rng(seed)
    shifted = np.full(n, as_of_day >= change_day and scenario != "stable")
    return _sample(rng, shifted, SHIFTED[scenario])


def write_dataset(
    out: Path,
    *,
    rows: int,
    seed: int,
    scenario: str = "stable",
    as_of_day: int = 0,
    change_day: int = 0,
) -> dict[str, Path]:
    """Write train (70%), validation (15%) and holdout (15%) CSVs and schema.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    frame = training_set(rows, seed, as_of_day, scenario, change_day=change_day)
    n_train, n_val = int(rows * 0.7), int(rows * 0.15)
    parts = {
        "train": frame.iloc[:n_train],
        "validation": frame.iloc[n_train : n_train + n_val],
        "holdout": frame.iloc[n_train + n_val :],
    }
    paths: dict[str, Path] = {}
    for name, part in parts.items():
        paths[name] = out / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    paths["schema"] = out / "schema.json"
    paths["schema"].write_text(json.dumps(schema_dict(), indent=2) + "\n")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.datagen", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the CSVs and schema.json"
    )
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenario", choices=SCENARIOS, default="stable")
    parser.add_argument("--as-of-day", type=int, default=0)
    parser.add_argument("--change-day", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 10:
        parser.error("--rows must be at least 10")
    paths = write_dataset(
        args.out,
        rows=args.rows,
        seed=args.seed,
        scenario=args.scenario,
        as_of_day=args.as_of_day,
        change_day=args.change_day,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
