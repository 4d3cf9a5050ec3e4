"""The `driftloop` command, called in-process: exit codes, reports, and every kind of bad input."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from driftloop.batch import FeatureBatch
from driftloop.capture import encode_capture_record
from driftloop.cli import main
from driftloop.profile import build_baseline, to_model_monitor_statistics
from driftloop.quality import encode_ground_truth
from driftloop.schema import Schema

SCHEMA = Schema(features=("age", "income", "region"), categorical=frozenset({"region"}))
REGIONS = np.array(["north", "south", "east", "west"], dtype=object)
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[tuple[float, float, str]]:
    age = rng.normal(40 + 10 * shift, 10, n).round(1)
    income = rng.lognormal(10, 0.5, n).round(0)
    region = rng.choice(REGIONS, n)
    return list(zip(age.tolist(), income.tolist(), region.tolist(), strict=True))


def _score(age: float) -> float:
    return round(float(1 / (1 + np.exp(-(age - 40) / 10))), 4)


def capture_line(
    i: int, row: tuple[Any, ...], score: float | None = None, prefix: str = "e"
) -> bytes:
    payload = ",".join(str(v) for v in row).encode()
    out = str(_score(float(row[0])) if score is None else score).encode()
    return encode_capture_record(
        input_data=payload,
        input_content_type="text/csv",
        output_data=out,
        output_content_type="text/csv",
        event_id=f"{prefix}{i}",
        inference_time=T0 + timedelta(seconds=i),
    )


def write_capture(path: Path, rows: list[tuple[Any, ...]], prefix: str = "e") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(capture_line(i, r, prefix=prefix) for i, r in enumerate(rows)))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A baseline (with predictions and an auc) and capture files: same, shifted."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(42)
    rows = _rows(rng, 3000)
    batch = FeatureBatch(
        columns={
            "age": np.array([r[0] for r in rows]),
            "income": np.array([r[1] for r in rows]),
            "region": np.array([r[2] for r in rows], dtype=object),
        },
        n_rows=len(rows),
        predictions=np.array([_score(r[0]) for r in rows]),
    )
    baseline = build_baseline([batch], SCHEMA, metrics={"auc": 0.74, "accuracy": 0.68})
    baseline.save(d / "baseline.json")
    write_capture(d / "same" / "2026" / "11" / "01" / "10" / "a.jsonl", _rows(rng, 600))
    write_capture(d / "same" / "2026" / "11" / "01" / "11" / "b.jsonl", _rows(rng, 600), prefix="f")
    write_capture(d / "shifted.jsonl", _rows(rng, 800, shift=1.0))
    return {"dir": d, "baseline": d / "baseline.json"}


# --------------------------------------------------------------------------- drift verdicts


def test_same_distribution_exits_0_and_writes_both_reports(work) -> None:
    # Given capture files from the baseline's distribution in an hourly folder tree
    d = work["dir"]
    # When checked
    code, out, err = run(
        "drift",
        "--baseline",
        str(work["baseline"]),
        str(d / "same"),
        "--json",
        str(d / "same.json"),
        "--html",
        str(d / "same.html"),
    )
    # Then no drift, exit 0, and both reports hold the whole window
    assert code == 0, err
    assert out.startswith("NO DRIFT")
    report = orjson.loads((d / "same.json").read_bytes())
    assert report["dataset_drift"] is False and report["n_rows"] == 1200
    assert report["n_files"] == 2 and report["n_malformed"] == 0
    html = (d / "same.html").read_text()
    assert "NO DRIFT" in html and "region" in html


def test_shifted_distribution_exits_1_and_names_the_feature(work) -> None:
    code, out, _ = run(
        "drift", "--baseline", str(work["baseline"]), str(work["dir"] / "shifted.jsonl")
    )
    assert code == 1
    assert out.startswith("DRIFT")
    assert "  age: wasserstein" in out
    assert "income:" not in out


def test_critical_and_config_reach_the_verdict(work, tmp_path) -> None:
    # Given a config that demands half the features drift, and age marked critical
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"drift_share": 0.5}')
    shifted = str(work["dir"] / "shifted.jsonl")
    base = str(work["baseline"])
    # Then one drifted feature of three is not enough, unless it is critical
    assert run("drift", "--baseline", base, shifted, "--config", str(cfg))[0] == 0
    assert (
        run("drift", "--baseline", base, shifted, "--config", str(cfg), "--critical", "age")[0] == 1
    )


# --------------------------------------------------------------------------- bad input inside files


def test_every_bad_record_is_counted_in_the_report(work, tmp_path) -> None:
    # Given a capture file of good rows interleaved with every kind of bad record
    rng = np.random.default_rng(7)
    good = _rows(rng, 400)
    bad_b64 = orjson.loads(capture_line(0, good[0]))
    bad_b64["captureData"]["endpointInput"].update(
        {"encoding": "BASE64", "data": "%%%not base64%%%"}
    )
    lines = [capture_line(i, r) for i, r in enumerate(good)]
    lines[10] = lines[10][: len(lines[10]) // 2] + b"\n"  # truncated JSON line
    lines[20] = orjson.dumps(bad_b64) + b"\n"  # wrong base64
    lines[30] = capture_line(30, (41.0, 5000.0))  # wrong column count (2 of 3)
    lines[40] = capture_line(40, (41.0, 5000.0, "north", 7))  # wrong column count (4 of 3)
    lines[50] = capture_line(
        50, ("forty", 5000.0, "north"), score=0.5
    )  # a string in a numeric column
    lines[60] = capture_line(60, ("nan", 5000.0, "north"), score=0.5)  # NaN: a missing value, kept
    lines[70] = capture_line(70, (41.0, "inf", "north"))  # inf: kept, counted invalid
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(lines))
    report_path = tmp_path / "r.json"
    # When checked
    code, out, err = run(
        "drift", "--baseline", str(work["baseline"]), str(path), "--json", str(report_path)
    )
    # Then the check still runs (exit 0: the rest is healthy), nothing is lost silently
    assert code == 0, err
    report = orjson.loads(report_path.read_bytes())
    by_reason = report["malformed"]["by_reason"]
    assert report["n_malformed"] == 5 == report["malformed"]["total"]
    assert by_reason == {
        "invalid_json": 1,
        "bad_base64": 1,
        "wrong_column_count": 2,
        "unparseable_value": 1,
    }
    assert report["n_rows"] == 395  # NaN and inf rows are kept
    assert report["features"]["age"]["missing_rate_current"] == pytest.approx(1 / 395)
    assert report["features"]["income"]["missing_rate_current"] == pytest.approx(1 / 395)
    assert "skipped: 5 malformed record(s)" in out
    assert f"{path}:11: invalid_json" in out  # the file and line of the first one


def test_empty_file_and_empty_folder_are_insufficient_data(work, tmp_path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    for target in (tmp_path / "empty.jsonl", tmp_path / "nothing"):
        code, out, err = run(
            "drift",
            "--baseline",
            str(work["baseline"]),
            str(target),
            "--json",
            str(tmp_path / "r.json"),
        )
        assert code == 0, err
        assert out.startswith("INSUFFICIENT DATA")
        assert orjson.loads((tmp_path / "r.json").read_bytes())["status"] == "insufficient_data"


def test_a_file_of_only_garbage_is_insufficient_data_with_everything_counted(
    work, tmp_path
) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(b"not json\n{\n[1,2]\n")
    code, out, _ = run(
        "drift", "--baseline", str(work["baseline"]), str(path), "--json", str(tmp_path / "r.json")
    )
    assert code == 0 and out.startswith("INSUFFICIENT DATA")
    assert orjson.loads((tmp_path / "r.json").read_bytes())["n_malformed"] == 3


# ------------------------------------------------------------- bad input that stops the check


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("driftloop: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_missing_baseline(work, tmp_path) -> None:
    code, _, err = run(
        "drift", "--baseline", str(tmp_path / "nope.json"), str(work["dir"] / "shifted.jsonl")
    )
    _one_line_error(code, err, "nope.json", "not found")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"driftloop_profile_version": 1, "schema": {"featu', "corrupt JSON"),
        (b'{"hello": "world"}', "unsupported"),
        (
            b'{"driftloop_profile_version": 1, "schema": {"features": ["a"]}, "n_rows": 3}',
            "malformed profile",
        ),
        (b"", "corrupt JSON"),
    ],
)
def test_corrupt_baseline(work, tmp_path, content: bytes, needle: str) -> None:
    bad = tmp_path / "baseline.json"
    bad.write_bytes(content)
    code, _, err = run("drift", "--baseline", str(bad), str(work["dir"] / "shifted.jsonl"))
    _one_line_error(code, err, str(bad), needle)


def test_missing_input_and_unknown_file_type(work, tmp_path) -> None:
    base = str(work["baseline"])
    _one_line_error(
        *run("drift", "--baseline", base, str(tmp_path / "gone.jsonl"))[::2],
        "gone.jsonl",
        "no such file",
    )
    (tmp_path / "data.txt").write_text("x")
    _one_line_error(
        *run("drift", "--baseline", base, str(tmp_path / "data.txt"))[::2],
        "data.txt",
        "unsupported",
    )


def test_bad_config_and_unknown_critical_feature(work, tmp_path) -> None:
    base, cur = str(work["baseline"]), str(work["dir"] / "shifted.jsonl")
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"fdr": 7}')
    _one_line_error(
        *run("drift", "--baseline", base, cur, "--config", str(cfg))[::2], "cfg.json", "fdr"
    )
    cfg.write_text("{not json")
    _one_line_error(
        *run("drift", "--baseline", base, cur, "--config", str(cfg))[::2],
        "cfg.json",
        "not valid JSON",
    )
    _one_line_error(
        *run("drift", "--baseline", base, cur, "--critical", "shoe_size")[::2], "shoe_size"
    )


def test_unwritable_report_path(work, tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = run(
        "drift",
        "--baseline",
        str(work["baseline"]),
        str(work["dir"] / "shifted.jsonl"),
        "--json",
        str(tmp_path / "f" / "r.json"),
    )
    _one_line_error(code, err, "r.json")


def test_usage_errors_exit_2() -> None:
    assert run("drift")[0] == 2
    assert run("frobnicate")[0] == 2
    assert run("--version")[0] == 0


# --------------------------------------------------------------------------- quality


def _labels(
    rows: list[tuple[Any, ...]], rng: np.random.Generator, flip: float, prefix: str = "e"
) -> bytes:
    """Labels that agree with the score (an auc near the baseline's 0.74), a share flipped."""
    out = []
    for i, r in enumerate(rows):
        y = int(rng.uniform() < _score(float(r[0])))
        if rng.uniform() < flip:
            y = 1 - y
        out.append(encode_ground_truth(f"{prefix}{i}", y))
    return b"".join(out)


@pytest.fixture(scope="module")
def quality_files(work) -> dict[str, Path]:
    d = work["dir"] / "quality"
    rng = np.random.default_rng(3)
    rows = _rows(rng, 1500)
    cap = write_capture(d / "capture" / "c.jsonl", rows)
    (d / "gt_good.jsonl").write_bytes(_labels(rows, rng, 0.0))
    (d / "gt_bad.jsonl").write_bytes(_labels(rows, rng, 0.45))
    return {"capture": cap, "good": d / "gt_good.jsonl", "bad": d / "gt_bad.jsonl", "dir": d}


def test_quality_ok_exits_0(work, quality_files) -> None:
    out_json = quality_files["dir"] / "q.json"
    code, out, err = run(
        "quality",
        "--baseline",
        str(work["baseline"]),
        "--capture",
        str(quality_files["capture"]),
        "--ground-truth",
        str(quality_files["good"]),
        "--json",
        str(out_json),
        "--html",
        str(quality_files["dir"] / "q.html"),
    )
    assert code == 0, err
    assert out.startswith("OK")
    report = orjson.loads(out_json.read_bytes())
    assert report["n_matched"] == 1500 and report["n_unmatched_labels"] == 0
    assert report["n_capture_files"] == 1 and report["n_label_files"] == 1
    assert "auc" in (quality_files["dir"] / "q.html").read_text()


def test_quality_degraded_exits_1(work, quality_files) -> None:
    code, out, _ = run(
        "quality",
        "--baseline",
        str(work["baseline"]),
        "--capture",
        str(quality_files["capture"]),
        "--ground-truth",
        str(quality_files["bad"]),
    )
    assert code == 1 and out.startswith("DEGRADED")
    assert "auc:" in out and "<- watched" in out


def test_quality_bad_labels_and_unmatched_are_counted(work, quality_files, tmp_path) -> None:
    # Given labels with a truncated line, a non-numeric label and ids no capture has
    gt = tmp_path / "gt.jsonl"
    gt.write_bytes(
        quality_files["good"].read_bytes()
        + b'{"groundTruthData": {"data": "1"\n'
        + encode_ground_truth("e5", "maybe")
        + encode_ground_truth("ghost-1", 1)
    )
    code, out, err = run(
        "quality",
        "--baseline",
        str(work["baseline"]),
        "--capture",
        str(quality_files["capture"]),
        "--ground-truth",
        str(gt),
        "--json",
        str(tmp_path / "q.json"),
    )
    assert code == 0, err
    report = orjson.loads((tmp_path / "q.json").read_bytes())
    assert report["n_unmatched_labels"] == 1
    assert report["malformed"]["by_reason"] == {"invalid_json": 1, "bad_label": 1}
    assert report["n_malformed"] == 2


def test_quality_without_labels_is_insufficient_data(work, quality_files, tmp_path) -> None:
    empty = tmp_path / "none.jsonl"
    empty.write_bytes(b"")
    code, out, _ = run(
        "quality",
        "--baseline",
        str(work["baseline"]),
        "--capture",
        str(quality_files["capture"]),
        "--ground-truth",
        str(empty),
    )
    assert code == 0 and out.startswith("INSUFFICIENT DATA")
    assert "1,500" in out  # predictions without a label


def test_quality_needs_the_watched_metric_in_the_baseline(work, quality_files) -> None:
    code, _, err = run(
        "quality",
        "--baseline",
        str(work["baseline"]),
        "--capture",
        str(quality_files["capture"]),
        "--ground-truth",
        str(quality_files["good"]),
        "--metric",
        "f2",
    )
    _one_line_error(code, err, "baseline.json", "no 'f2' metric")


# ------------------------------------------------------------- baseline from Model Monitor


def test_baseline_from_model_monitor_statistics(work, tmp_path) -> None:
    # Given a Model Monitor statistics.json of the baseline
    from driftloop.profile import DatasetProfile

    stats = tmp_path / "statistics.json"
    stats.write_bytes(
        orjson.dumps(to_model_monitor_statistics(DatasetProfile.load(work["baseline"])))
    )
    out_path = tmp_path / "from_mm.json"
    # When converted, then checking the shifted file against it still finds the drift
    code, out, err = run("baseline", "--from-model-monitor", str(stats), "--out", str(out_path))
    assert code == 0, err
    assert "3 features (1 categorical)" in out
    assert run("drift", "--baseline", str(out_path), str(work["dir"] / "shifted.jsonl"))[0] == 1
    stats.write_text('{"features": "nope"}')
    _one_line_error(
        *run("baseline", "--from-model-monitor", str(stats), "--out", str(out_path))[::2],
        "statistics.json",
    )


def test_baseline_needs_an_input(tmp_path) -> None:
    code, _, err = run("baseline", "--out", str(tmp_path / "b.json"))
    _one_line_error(code, err, "--from-model-monitor")


def test_unexpected_errors_are_one_line(monkeypatch, work) -> None:
    # Given a bug deep in the input path
    import driftloop.drift

    def boom(*_a: Any, **_k: Any) -> Any:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(driftloop.drift, "check_sources", boom)
    monkeypatch.delenv("DRIFTLOOP_DEBUG", raising=False)
    code, _, err = run(
        "drift", "--baseline", str(work["baseline"]), str(work["dir"] / "shifted.jsonl")
    )
    # Then the user sees one line, and --debug shows the traceback
    _one_line_error(code, err, "ZeroDivisionError", "--debug")
    with pytest.raises(ZeroDivisionError):
        run(
            "--debug",
            "drift",
            "--baseline",
            str(work["baseline"]),
            str(work["dir"] / "shifted.jsonl"),
        )


def test_b64_helper_sanity() -> None:
    # The bad-base64 fixture above must really be invalid base64 for the test to mean anything.
    with pytest.raises(ValueError):
        base64.b64decode("%%%not base64%%%", validate=True)


def test_console_script_smoke(work) -> None:
    # Given the installed `driftloop` console script (one real process, to prove the wiring)
    import subprocess
    import sys

    script = Path(sys.executable).with_name("driftloop")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    # When it checks the shifted file
    proc = subprocess.run(
        [
            str(script),
            "drift",
            "--baseline",
            str(work["baseline"]),
            str(work["dir"] / "shifted.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then the process exit code is the verdict and stdout the summary
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("DRIFT") and proc.stderr == ""


def test_cli_reports_only_carry_documented_fields(work, quality_files, tmp_path) -> None:
    # Given the documented schema (docs/report-schema.md), context fields included
    from tests.unit.test_report_schema import check_fields, documented

    tables = documented()
    # When the CLI writes both reports
    run(
        "drift",
        "--baseline",
        str(work["baseline"]),
        str(work["dir"] / "shifted.jsonl"),
        "--json",
        str(tmp_path / "d.json"),
    )
    run(
        "quality",
        "--baseline",
        str(work["baseline"]),
        "--capture",
        str(quality_files["capture"]),
        "--ground-truth",
        str(quality_files["good"]),
        "--json",
        str(tmp_path / "q.json"),
    )
    drift = orjson.loads((tmp_path / "d.json").read_bytes())
    quality = orjson.loads((tmp_path / "q.json").read_bytes())
    # Then every field is documented, core or context, with its type
    check_fields(drift, {**tables["drift"], **tables["drift.context"]}, "drift", exact=False)
    assert set(tables["drift"]) <= set(drift)
    check_fields(drift["malformed"], tables["malformed"], "drift.malformed")
    check_fields(
        quality, {**tables["quality"], **tables["quality.context"]}, "quality", exact=False
    )
    assert set(tables["quality"]) <= set(quality)
