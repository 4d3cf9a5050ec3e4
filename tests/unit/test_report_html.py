"""The drift HTML page, rendered from real profiles and a real comparison."""

from __future__ import annotations

import re

import numpy as np
import pytest

from driftloop.batch import FeatureBatch
from driftloop.drift import DriftConfig, compare
from driftloop.profile import DatasetProfile, build_baseline, profile_batch
from driftloop.report import render_html
from driftloop.schema import Schema

EVIL = '<script>alert("x")</script>&"\''


def _batch(schema: Schema, n: int, rng: np.random.Generator, shift: float) -> FeatureBatch:
    cols: dict[str, np.ndarray] = {}
    for name in schema.features:
        if schema.is_categorical(name):
            cats = np.array(["a", "b", "c", "d"] + (["new"] if shift else []), dtype=object)
            cols[name] = rng.choice(cats, n)
        else:
            cols[name] = rng.normal(0.0, 1.0, n)
    # Only the first numeric feature (the hostile name) moves.
    cols[schema.features[0]] = cols[schema.features[0]] + shift
    return FeatureBatch(columns=cols, n_rows=n, predictions=rng.uniform(0, 1, n))


@pytest.fixture(scope="module")
def pages() -> dict[str, tuple[str, dict, DatasetProfile, DatasetProfile]]:
    # Given 25 features (20 numeric, 5 categorical), one with an HTML-injection name
    names = (EVIL, *(f"num_{i}" for i in range(1, 20)), *(f"cat_{i}" for i in range(5)))
    schema = Schema(features=names, categorical=frozenset(f"cat_{i}" for i in range(5)))
    rng = np.random.default_rng(11)
    baseline = build_baseline([_batch(schema, 4000, rng, 0.0)], schema)
    out = {}
    for label, shift in (("same", 0.0), ("shifted", 1.5)):
        current = profile_batch(_batch(schema, 3000, rng, shift), baseline)
        report = compare(baseline, current, DriftConfig()).to_dict()
        # When rendered
        out[label] = (render_html(report, baseline, current, title="t"), report, baseline, current)
    return out


def test_page_is_self_contained_and_small(pages) -> None:
    html = pages["shifted"][0]
    # Then it is a full document, under 1 MB for 25 features, with no script and no fetch
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert len(html.encode("utf-8")) < 1_000_000
    assert "<script" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "http" not in html
    assert html.count("<svg") == 26  # 25 features + the model output


def test_hostile_feature_name_is_escaped(pages) -> None:
    html = pages["shifted"][0]
    assert EVIL not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&quot;&#x27;" in html


def test_summary_and_verdict(pages) -> None:
    same_html, same_report, *_ = pages["same"]
    html, report, *_ = pages["shifted"]
    assert report["dataset_drift"] and not same_report["dataset_drift"]
    assert "DRIFT DETECTED" in html and "NO DRIFT" in same_html
    assert f">{report['n_rows']:,}<" in html  # rows (current)
    assert "malformed (skipped)" in html
    assert f"{report['n_drifted']} of 25" in html


def test_scores_table_lists_drifted_features_first(pages) -> None:
    html, report, *_ = pages["shifted"]
    table = html.split("<h2>Scores</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr( class=\"d\")?><td><a href=\"#f\d+\">(.*?)</a>", table)
    flags = [bool(marked) for marked, _ in rows]
    # drifted rows form a prefix of the table
    assert flags == sorted(flags, reverse=True)
    assert sum(flags) == report["n_drifted"] + bool(
        report["prediction_drift"] and report["prediction_drift"]["drift"]
    )
    assert len(rows) == 26


def test_histograms_are_proportions_of_both_profiles(pages) -> None:
    _, report, baseline, current = pages["shifted"]
    html = pages["shifted"][0]
    # The categorical section shows the new category as unseen with its current share
    section = html.split("(categorical)</span></h3>", 1)[1].split("</section>", 1)[0]
    tip = re.search(r"<title>\(unseen\): baseline ([\d.]+)%, current ([\d.]+)%</title>", section)
    assert tip is not None
    assert float(tip.group(1)) == 0.0 and float(tip.group(2)) == pytest.approx(20.0, abs=3.0)
    assert "unseen: new" in section
