"""Evidently's DataDriftPreset against driftloop on the same 1M rows.

The AWS sample that replaces Model Monitor runs Evidently in a container Lambda; this
measures what that costs on the benchmark data. Evidently gets the rows already parsed
into pandas DataFrames (parsing is not counted), in its own venv under
.bench/evidently-venv (evidently and pandas<3 from PyPI; if that cannot be installed the
reason is printed and the benchmark is skipped with exit 0). driftloop is measured two
ways on the same rows: profiling + comparison of the same pre-parsed arrays (like for
like), and end to end from the capture files (from drift_bench.py's results, or run
here).

Environment: EVIDENTLY_ROWS (default 1000000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from drift_bench import TRAIN_ROWS, driftloop_cmd, ensure_baseline, timed  # noqa: E402
from gen_capture import ROOT, feature_names, generate  # noqa: E402

VENV = ROOT / "evidently-venv"
PACKAGES = ["evidently", "pandas<3"]

CHILD = HERE / "_evidently_child.py"  # runs in the evidently venv


def ensure_venv() -> Path | None:
    py = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if marker.exists() and py.exists():
        return py
    print(f"creating {VENV} with {' '.join(PACKAGES)} (once)", flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, and say why
        print(f"SKIP: cannot create a venv for evidently: {exc}")
        return None
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        print("SKIP: evidently could not be installed: " + " | ".join(tail))
        return None
    marker.write_text("ok\n")
    return py


def prepare_data(n: int) -> Path:
    """The baseline's training rows and n captured rows, parsed by driftloop, as .npz."""
    out = ROOT / f"evidently-data-{n}.npz"
    if out.exists():
        return out
    import numpy as np

    from driftloop.capture import iter_capture_paths, read_capture
    from driftloop.errors import MalformedLog
    from driftloop.schema import Schema
    from driftloop.tables import read_table

    num_names, cat_names = feature_names()
    schema = Schema(features=tuple(num_names + cat_names), categorical=frozenset(cat_names))
    log = MalformedLog()
    ensure_baseline()
    train = ROOT / f"train-{TRAIN_ROWS}.csv"

    def collect(batches: Any) -> tuple[Any, list[Any]]:
        nums, cats = [], []
        for b in batches:
            nums.append(np.column_stack([b.columns[c] for c in num_names]))
            cats.append(np.column_stack([b.columns[c].astype(str) for c in cat_names]))
        return np.concatenate(nums), np.concatenate(cats)

    ref_num, ref_cat = collect(read_table(train, schema=schema, malformed=log))
    cur_num, cur_cat = collect(
        b
        for p in iter_capture_paths(generate(n))
        for b in read_capture(p, schema=schema, malformed=log)
    )
    arrays: dict[str, Any] = {"ref_num": ref_num, "cur_num": cur_num}
    ref_codes = np.empty(ref_cat.shape, dtype=np.int32)
    cur_codes = np.empty(cur_cat.shape, dtype=np.int32)
    for j in range(len(cat_names)):
        names = np.unique(np.concatenate([ref_cat[:, j], cur_cat[:, j]]))
        arrays[f"cat_names_{j}"] = names.astype("U")
        ref_codes[:, j] = np.searchsorted(names, ref_cat[:, j])
        cur_codes[:, j] = np.searchsorted(names, cur_cat[:, j])
    arrays["ref_cat"] = ref_codes
    arrays["cur_cat"] = cur_codes
    np.savez(out, **arrays)
    return out


def driftloop_compute(data: Path) -> dict[str, float]:
    """driftloop profiling + comparison on the same pre-parsed rows, in this process."""
    import numpy as np

    from driftloop.batch import FeatureBatch
    from driftloop.drift import compare
    from driftloop.profile import DatasetProfile, empty_profile, profile_batch

    baseline = DatasetProfile.load(ensure_baseline())
    num_names, cat_names = feature_names()
    d = np.load(data)
    cur_num, cur_cat = d["cur_num"], d["cur_cat"]
    names = [d[f"cat_names_{j}"].astype(object) for j in range(len(cat_names))]
    chunks = []
    for a in range(0, len(cur_num), 65536):
        b = min(a + 65536, len(cur_num))
        cols = {n: np.ascontiguousarray(cur_num[a:b, i]) for i, n in enumerate(num_names)}
        for j, n in enumerate(cat_names):
            cols[n] = names[j][cur_cat[a:b, j]]
        chunks.append(FeatureBatch(columns=cols, n_rows=b - a))
    t0 = time.perf_counter()
    current = empty_profile(baseline)
    for batch in chunks:
        current = current.merge(profile_batch(batch, baseline))
    report = compare(baseline, current)
    secs = time.perf_counter() - t0
    return {"compute_s": secs, "drifted": float(len(report.to_dict().get("drifted_features", [])))}


def driftloop_end_to_end(n: int) -> dict[str, Any]:
    cached = ROOT / "drift_bench.json"
    if cached.exists():
        for row in json.loads(cached.read_text()).get("results", []):
            if (
                row["records"] == n
                and row["what"].startswith("driftloop drift")
                and row["exit"] in (0, 1)
            ):
                return {
                    "wall_s": row["wall_s"],
                    "peak_rss_mb": row["peak_rss_mb"],
                    "source": str(cached),
                }
    with tempfile.TemporaryDirectory() as tmp:
        r = timed(
            [
                *driftloop_cmd(),
                "drift",
                "--baseline",
                str(ensure_baseline()),
                "--json",
                str(Path(tmp) / "r.json"),
                str(generate(n)),
            ]
        )
    return {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "source": "run now"}


def main() -> int:
    n = int(os.environ.get("EVIDENTLY_ROWS", "1000000"))
    print(f"Evidently DataDriftPreset vs driftloop on {n:,} rows (20 numeric + 5 categorical)")
    py = ensure_venv()
    if py is None:
        return 0
    data = prepare_data(n)
    num_names, cat_names = feature_names()
    r = timed([str(py), str(CHILD), str(data), json.dumps(num_names), json.dumps(cat_names)])
    if r["exit"] != 0:
        tail = r["stderr"].strip().splitlines()[-3:]
        print("SKIP: evidently run failed: " + " | ".join(tail))
        return 0
    ev = json.loads(r["stdout"].strip().splitlines()[-1])
    dl = driftloop_compute(data)
    e2e = driftloop_end_to_end(n)
    ev_total = ev["prepare_s"] + ev["run_s"]
    print(f"evidently {ev['version']} ({ev['api']})")
    print(f"reference {ev['ref_rows']:,} rows, current {ev['rows']:,} rows")
    rows = [
        ("evidently: Dataset prep + DataDriftPreset", ev_total, f"{r['peak_rss_mb']:.0f}"),
        ("driftloop: profile + compare, same arrays", dl["compute_s"], ""),
        ("driftloop drift end to end (parses capture)", e2e["wall_s"], f"{e2e['peak_rss_mb']:.0f}"),
    ]
    print(f"{'':<44} {'seconds':>9} {'peak RSS MB':>12}")
    for label, secs, rss in rows:
        print(f"{label:<44} {secs:>9.2f} {rss:>12}")
    print(
        f"(evidently process: {ev['rss_data_mb']:.0f} MB resident with the DataFrames built,"
        f" peak {ev['peak_before_run_mb']:.0f} MB before the run, {ev['peak_end_mb']:.0f} MB after)"
    )
    print(f"(driftloop end to end from {e2e['source']})")
    like = ev_total / dl["compute_s"]
    e2e_ratio = ev_total / e2e["wall_s"]
    print(f"speed ratio, like for like (evidently / driftloop compute): {like:,.1f}x")
    print(f"speed ratio, evidently on parsed rows / driftloop end to end: {e2e_ratio:,.1f}x")
    print(f"drifted columns: evidently {ev['drifted']}, driftloop {dl['drifted']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
