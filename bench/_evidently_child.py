"""Runs inside .bench/evidently-venv: Evidently's DataDriftPreset on pre-parsed rows.

argv: the .npz from evidently_bench.prepare_data, the numeric and categorical column
names as JSON. Prints one JSON line of timings. Not a benchmark on its own (run.py skips
modules whose names start with "_").
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from typing import Any

import numpy as np
import pandas as pd


def frame(data: Any, prefix: str, num_names: list[str], cat_names: list[str]) -> pd.DataFrame:
    cols: dict[str, Any] = {n: data[f"{prefix}_num"][:, i] for i, n in enumerate(num_names)}
    codes = data[f"{prefix}_cat"]
    for j, n in enumerate(cat_names):
        names = data[f"cat_names_{j}"].tolist()
        cols[n] = pd.Categorical.from_codes(codes[:, j], names).astype(object)
    return pd.DataFrame(cols)


def run_new(
    ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str]
) -> tuple[Any, float]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    t0 = time.perf_counter()
    ref_ds = Dataset.from_pandas(ref, data_definition=definition)
    cur_ds = Dataset.from_pandas(cur, data_definition=definition)
    prep = time.perf_counter() - t0
    return Report([DataDriftPreset()]).run(cur_ds, ref_ds), prep


def run_old(
    ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str]
) -> tuple[Any, float]:
    from evidently import ColumnMapping
    from evidently.metric_preset import DataDriftPreset
    from evidently.report import Report

    report = Report(metrics=[DataDriftPreset()])
    mapping = ColumnMapping(numerical_features=num, categorical_features=cat)
    report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
    return report, 0.0


def drifted_count(snapshot: Any) -> float | None:
    try:
        text = json.dumps(snapshot.dict(), default=str)
    except Exception:  # noqa: BLE001 - the count is a courtesy, not the measurement
        return None
    for pattern in (
        r'"number_of_drifted_columns":\s*([0-9.]+)',
        r'DriftedColumnsCount[^}]*?"count":\s*([0-9.]+)',
    ):
        m = re.search(pattern, text)
        if m:
            return float(m.group(1))
    return None


def main() -> None:
    data = np.load(sys.argv[1], allow_pickle=False)
    num_names, cat_names = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    ref = frame(data, "ref", num_names, cat_names)
    cur = frame(data, "cur", num_names, cat_names)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import evidently

    t0 = time.perf_counter()
    try:
        snapshot, prep = run_new(ref, cur, num_names, cat_names)
        api = "Report([DataDriftPreset()]).run(current, reference)"
    except ImportError:
        snapshot, prep = run_old(ref, cur, num_names, cat_names)
        api = "Report(metrics=[DataDriftPreset()]).run(...)"
    total = time.perf_counter() - t0
    out = {
        "version": getattr(evidently, "__version__", "?"),
        "api": api,
        "prepare_s": prep,
        "run_s": total - prep,
        "rss_data_mb": rss_data,
        "drifted": drifted_count(snapshot),
        "rows": len(cur),
        "ref_rows": len(ref),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
