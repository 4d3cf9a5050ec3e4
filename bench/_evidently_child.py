"""Runs inside .bench/evidently-venv: Evidently's DataDriftPreset on pre-parsed rows.

argv: the .npz from evidently_bench.prepare_data, the numeric and categorical column
names as JSON. Prints one JSON line of timings. Not a benchmark on its own (run.py skips
modules whose names start with "_").
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import numpy as np
import pandas as pd


def frame(data: Any, prefix: str, num_names: list[str], cat_names: list[str]) -> pd.DataFrame:
    # an NpzFile reads an array anew on every access: take each one once
    num = data[f"{prefix}_num"]
    cols: dict[str, Any] = {n: num[:, i].copy() for i, n in enumerate(num_names)}
    del num
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
    m = re.search(r'"number_of_drifted_columns":\s*([0-9.]+)', text)  # evidently < 0.7
    if m is None:
        i = text.find("DriftedColumnsCount")  # 0.7+: {"count": n, "share": s} follows
        m = re.compile(r'"count":\s*([0-9.]+)').search(text, i) if i >= 0 else None
    return float(m.group(1)) if m else None


def memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc (Linux)."""
    fields = {}
    for line in open("/proc/self/status"):  # noqa: PTH123, SIM115 - tiny read, Linux only
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


def main() -> None:
    data = np.load(sys.argv[1], allow_pickle=False)
    num_names, cat_names = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    ref = frame(data, "ref", num_names, cat_names)
    cur = frame(data, "cur", num_names, cat_names)
    rss_data, peak_data = memory_mb()
    import evidently

    t0 = time.perf_counter()
    try:
        snapshot, prep = run_new(ref, cur, num_names, cat_names)
        api = "Report([DataDriftPreset()]).run(current, reference)"
    except ImportError:
        snapshot, prep = run_old(ref, cur, num_names, cat_names)
        api = "Report(metrics=[DataDriftPreset()]).run(...)"
    total = time.perf_counter() - t0
    _, peak_end = memory_mb()
    out = {
        "version": getattr(evidently, "__version__", "?"),
        "api": api,
        "prepare_s": prep,
        "run_s": total - prep,
        "rss_data_mb": rss_data,
        "peak_before_run_mb": peak_data,
        "peak_end_mb": peak_end,
        "drifted": drifted_count(snapshot),
        "rows": len(cur),
        "ref_rows": len(ref),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
