"""docs/report-schema.md is the contract: real reports carry exactly the documented fields."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from driftloop.batch import FeatureBatch
from driftloop.drift import compare
from driftloop.profile import build_baseline, profile_batch
from driftloop.quality import JoinResult, QualityConfig, check_quality
from driftloop.schema import Schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
    "object": (dict,),
}


def documented() -> dict[str, dict[str, str]]:
    """{table name: {field: type}} from the `<!-- schema: name -->` tables of the doc."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        marker = re.fullmatch(r"<!-- schema: (\S+) -->", line.strip())
        if marker:
            current = tables.setdefault(marker.group(1), {})
            continue
        if current is None:
            continue
        row = re.match(r"\| `([^`]+)` \| ([a-z|]+) \|", line)
        if row:
            current[row.group(1)] = row.group(2)
        elif not line.startswith("|"):
            current = None
    return tables


def check_fields(
    value: dict[str, Any], spec: dict[str, str], where: str, *, exact: bool = True
) -> None:
    if exact:
        assert set(value) == set(spec), (
            f"{where}: undocumented {set(value) - set(spec)}, missing {set(spec) - set(value)}"
        )
    for key, v in value.items():
        allowed = spec[key].split("|")
        if v is None:
            assert "null" in allowed, f"{where}.{key} is null but documented as {spec[key]}"
            continue
        types = tuple(t for name in allowed if name != "null" for t in _TYPES[name])
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        assert ok, f"{where}.{key} = {v!r} is not {spec[key]}"


@pytest.fixture(scope="module")
def drift_report() -> dict[str, Any]:
    schema = Schema(features=("x", "y", "c"), categorical=frozenset({"c"}))
    rng = np.random.default_rng(5)

    def batch(n: int, shift: float) -> FeatureBatch:
        return FeatureBatch(
            columns={
                "x": rng.normal(shift, 1, n),
                "y": rng.exponential(1, n),
                "c": rng.choice(np.array(["a", "b", "z" if shift else "a"], dtype=object), n),
            },
            n_rows=n,
            predictions=rng.uniform(0, 1, n),
        )

    baseline = build_baseline([batch(2000, 0.0)], schema)
    report = compare(baseline, profile_batch(batch(1000, 1.0), baseline)).to_dict()
    # strict JSON round trip, as written to disk
    return orjson.loads(orjson.dumps(report))


def test_doc_has_every_table() -> None:
    tables = documented()
    for name in (
        "drift",
        "drift.features.*",
        "drift.config",
        "drift.context",
        "quality",
        "quality.metrics.*",
        "quality.context",
        "malformed",
    ):
        assert tables.get(name), f"table {name} missing or empty in {DOC.name}"


def test_drift_report_matches_the_documented_fields(drift_report) -> None:
    # Given the documented tables and a report with numeric, categorical and prediction drift
    tables = documented()
    # Then every field is documented with its type, and every documented field is present
    check_fields(drift_report, tables["drift"], "drift")
    check_fields(drift_report["config"], tables["drift.config"], "drift.config")
    assert drift_report["prediction_drift"] is not None
    for name, entry in [
        *drift_report["features"].items(),
        ("prediction_drift", drift_report["prediction_drift"]),
    ]:
        check_fields(entry, tables["drift.features.*"], f"drift.features.{name}")


@pytest.mark.parametrize("problem", ["binary", "regression"])
def test_quality_report_matches_the_documented_fields(problem: str) -> None:
    tables = documented()
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200).astype(float) if problem == "binary" else rng.normal(0, 1, 200)
    joined = JoinResult(
        [f"r{i}" for i in range(200)], y, np.clip(y + rng.normal(0, 0.3, 200), 0, 1), 1, 2
    )
    baseline = {"auc": 0.9, "rmse": 0.3}
    report = orjson.loads(
        orjson.dumps(
            check_quality(baseline, joined, QualityConfig(problem=problem, min_labels=10)).to_dict()
        )
    )
    check_fields(report, tables["quality"], "quality")
    check_fields(report["malformed"], tables["malformed"], "malformed")
    for name, entry in report["metrics"].items():
        check_fields(entry, tables["quality.metrics.*"], f"quality.metrics.{name}")
