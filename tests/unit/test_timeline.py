"""The timeline page: self-contained, one heatmap cell per feature and window, links, markers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from driftloop.errors import DriftloopError
from driftloop.local.timeline import _heat_colour, render_timeline, write_timeline

START = datetime(2026, 1, 1, tzinfo=UTC)


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _metrics(days: int = 4, window_hours: int = 12) -> dict[str, Any]:
    features = ["age", "income", "purpose"]
    windows, traffic = [], []
    for h in range(0, days * 24, window_hours):
        s, e = START + timedelta(hours=h), START + timedelta(hours=h + window_hours)
        drifted = h >= 48
        windows.append(
            {
                "start": _iso(s),
                "end": _iso(e),
                "n_rows": 100,
                "drift_share": 0.67 if drifted else 0.0,
                "drifted": drifted,
                "scores": {"age": 0.1, "income": 2.5 if drifted else 0.2},
                "report": f"reports/drift/demo/{h:04d}/report.html",
            }
        )
        traffic.append({"start": _iso(s), "end": _iso(e), "rows": 100, "by_model": {"m-1": 100}})
    return {
        "start": _iso(START),
        "end": _iso(START + timedelta(days=days)),
        "endpoint": "demo<&>",
        "scenario": {"days": days},
        "features": features,
        "windows": windows,
        "drift_share_threshold": 0.5,
        "traffic": traffic,
        "quality": [
            {
                "start": _iso(START),
                "end": _iso(START + timedelta(days=1)),
                "n": 50,
                "auc": 0.81,
                "degraded": False,
            },
            {
                "start": _iso(START + timedelta(days=1)),
                "end": _iso(START + timedelta(days=2)),
                "n": 0,
                "auc": None,
                "degraded": False,
            },
        ],
        "reference_auc": 0.8,
        "models": [{"name": "m-1", "from": _iso(START), "to": None}],
        "events": [
            {"time": _iso(START + timedelta(days=2)), "kind": "onset", "text": "onset"},
            {
                "time": _iso(START + timedelta(days=2, hours=12)),
                "kind": "drift",
                "text": "drift <found>",
                "link": "reports/x.html",
            },
        ],
        "summary": {"requests": 800, "AUC before": 0.8},
    }


def test_page_is_self_contained_with_no_network_references() -> None:
    # Given a metrics document, When the page is rendered
    page = render_timeline(_metrics())
    # Then it fetches nothing: no URLs with a scheme, no scripts, no external stylesheets
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


def test_heatmap_has_one_cell_per_feature_and_window_linked_to_its_report() -> None:
    # Given 8 windows and 3 features
    metrics = _metrics(days=4, window_hours=12)
    # When rendered
    page = render_timeline(metrics)
    # Then there are 24 heatmap cells, features without a score are grey, and every window
    # links to its report by a relative path
    assert page.count('class="cell"') == 8 * 3
    assert page.count('fill="#e5e7eb"') >= 8  # "purpose" has no score in any window
    for w in metrics["windows"]:
        assert f'<a href="{w["report"]}">' in page
    # And drifted windows' bars are red, the others blue
    assert page.count('class="drift-bar"') == 8
    assert len(re.findall(r'class="drift-bar"[^>]*fill="#dc2626"', page)) == 4


def test_markers_for_every_event_in_every_chart_and_text_is_escaped() -> None:
    # Given two events, When rendered
    page = render_timeline(_metrics())
    # Then each of the four charts draws both markers
    assert page.count('class="marker marker-drift"') == 4
    assert page.count('class="marker marker-onset"') == 4
    # And user-supplied text is escaped, and the event table links the drift report
    assert "demo&lt;&amp;&gt;" in page and "demo<&>" not in page
    assert "drift &lt;found&gt;" in page
    assert '<a href="reports/x.html">' in page


def test_auc_points_skip_windows_without_labels() -> None:
    # Given one labelled and one unlabelled quality window, When rendered
    page = render_timeline(_metrics())
    # Then one AUC point is drawn, with the reference line
    assert page.count('class="auc-point"') == 1
    assert "pre-drift level 0.800" in page


def test_heat_colour_scale() -> None:
    # Given scores below, at and far over the threshold, Then colours go white -> amber -> red
    assert _heat_colour(0.0) == "#ffffff"
    assert _heat_colour(1.0) == "#fcd34d"
    assert _heat_colour(5.0) == "#b91c1c"
    assert _heat_colour(None) == "#e5e7eb"


def test_bad_metrics_give_a_clear_error(tmp_path: Path) -> None:
    # Given metrics with no start, or a bad time, When rendered, Then a one-line DriftloopError
    bad = _metrics()
    del bad["start"]
    with pytest.raises(DriftloopError, match="timeline: metrics lack 'start'"):
        render_timeline(bad)
    bad = _metrics()
    bad["events"][0]["time"] = "yesterday"
    with pytest.raises(DriftloopError, match="bad timestamp 'yesterday'"):
        render_timeline(bad)
    # And a good document is written where asked
    out = write_timeline(_metrics(), tmp_path / "sub" / "timeline.html")
    assert out.read_text(encoding="utf-8").count("<svg") == 4
