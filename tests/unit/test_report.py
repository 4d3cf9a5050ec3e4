"""Reports: the JSON writer and the quality HTML page (the drift page is in test_report_html.py)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from driftloop.errors import DriftloopError
from driftloop.quality import JoinResult, QualityConfig, check_quality
from driftloop.report import render_quality_html, write_json_report


def test_json_report_is_written_whole_with_nan_as_null(tmp_path) -> None:
    # Given a report holding numpy values and a NaN, to a folder that does not exist yet
    path = tmp_path / "deep" / "er" / "report.json"
    report = {"score": np.float64(0.25), "counts": np.array([1, 2]), "p": math.nan, "name": "é"}
    # When written
    written = write_json_report(report, path)
    # Then the file is strict JSON, nothing else is left in the folder
    assert written == path
    assert orjson.loads(path.read_bytes()) == {
        "score": 0.25,
        "counts": [1, 2],
        "p": None,
        "name": "é",
    }
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_unwritable_report_path_is_a_one_line_error(tmp_path) -> None:
    # Given a path whose parent is a file
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # When written, then the error names the path
    with pytest.raises(DriftloopError, match="cannot write report") as info:
        write_json_report({"a": 1}, blocker / "report.json")
    assert "\n" not in str(info.value) and "report.json" in str(info.value)


def test_unserialisable_report_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DriftloopError, match="not JSON-serialisable"):
        write_json_report({"a": object()}, tmp_path / "r.json")


def _quality_report(degraded: bool) -> dict:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(float)
    score = np.clip(y * 0.5 + 0.25 + rng.normal(0, 0.2, 300), 0, 1)
    joined = JoinResult([f"r{i}" for i in range(300)], y, score, 2, 5)
    baseline = {"auc": 0.999 if degraded else 0.5, "accuracy": 0.9}
    return check_quality(baseline, joined, QualityConfig(max_drop=0.01, min_labels=10)).to_dict()


def test_quality_html_shows_verdict_counts_and_metrics() -> None:
    # Given a degraded and a healthy quality report
    bad, good = _quality_report(True), _quality_report(False)
    # When rendered
    bad_html, good_html = render_quality_html(bad), render_quality_html(good)
    # Then the verdict, the watched metric and the counts are on the page
    assert "DEGRADED" in bad_html and "DEGRADED" not in good_html and ">OK<" in good_html
    assert "auc (watched)" in bad_html
    assert ">300<" in bad_html  # matched labels
    assert "actual 1" in bad_html  # confusion matrix
    assert "<script" not in bad_html and "http" not in bad_html.replace('lang="en"', "")


def test_quality_html_escapes_its_title() -> None:
    html = render_quality_html(_quality_report(False), title="<img src=x onerror=alert(1)>")
    assert "<img" not in html and "&lt;img" in html


def test_report_gets_the_usual_file_permissions(tmp_path) -> None:
    # Given the process umask
    import os

    umask = os.umask(0o022)
    try:
        # When a report is written, then it is world-readable like any file written here
        path = write_json_report({"a": 1}, tmp_path / "r.json")
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
