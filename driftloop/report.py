"""Reports a person reads: the JSON report on disk and a static HTML page.

The JSON report is the machine contract (its fields are documented in
docs/report-schema.md and pinned by a test). The HTML page is what someone opens
from the reports bucket after an alarm: one self-contained file (inline CSS and
inline SVG, no script, no font or CDN fetch) so it renders from S3, an email
attachment or a laptop with no network, and stays small enough to store for
every window. Every name in it comes from user data, so every name is escaped.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from driftloop.errors import DriftloopError

TOP_CATEGORIES = 12  # categorical bars shown per feature before "other"
MAX_NUMERIC_BARS = 60  # wider histograms are merged pairwise for display only

_CSS = """
body{font:14px/1.4 system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px}
h3{font-size:15px;margin:0 0 4px}
.badge{display:inline-block;padding:3px 10px;border-radius:4px;font-weight:600;color:#fff}
.drift{background:#c62828}.ok{background:#2e7d32}.insufficient{background:#757575}
dl.sum{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:12px 0}
dl.sum dt{color:#57606a}dl.sum dd{margin:0;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #d0d7de;padding:4px 10px;text-align:left}
th{background:#f6f8fa}td.n{text-align:right}tr.d td{background:#fdecea}
section.f{margin:18px 0;padding:10px;border:1px solid #d0d7de;border-radius:6px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
.b{fill:#9aa4ae}.c{fill:#1f6feb}.cd{fill:#c62828}.muted{color:#57606a}
svg text{font:10px sans-serif;fill:#57606a}
""".strip()


# --------------------------------------------------------------------------- JSON


def write_json_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON (NaN/inf become null), atomically.

    The file appears whole or not at all, so a reader polling the folder never
    sees half a report. An unwritable path is a one-line DriftloopError naming it.
    """
    target = Path(path)
    try:
        data = orjson.dumps(
            report,
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError as exc:
        raise DriftloopError(f"{target}: report is not JSON-serialisable ({exc})") from exc
    return _atomic_write(target, data + b"\n")


def write_text_report(text: str, path: str | Path) -> Path:
    """Write an HTML (or any text) report atomically, UTF-8."""
    return _atomic_write(Path(path), text.encode("utf-8"))


def _atomic_write(target: Path, data: bytes) -> Path:
    # A uniquely named sibling, renamed over the target: the rename is atomic on POSIX, and
    # open() (unlike mkstemp's 0600) gives the file the usual umask-derived permissions.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("xb") as fh:
                fh.write(data)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DriftloopError(f"{target}: cannot write report ({exc.strerror or exc})") from exc
    return target


# --------------------------------------------------------------------------- formatting


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.{digits}g}"
    return escape(str(x))


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


# --------------------------------------------------------------------------- histograms


def _numeric_bars(profile: Any) -> tuple[list[str], np.ndarray]:
    """Bin labels and counts of a NumericProfile (k-1 inner edges -> k bins, open at both ends)."""
    edges = np.asarray(getattr(profile, "edges", []), dtype=np.float64)
    counts = np.asarray(getattr(profile, "counts", []), dtype=np.float64)
    k = counts.size
    labels = []
    for i in range(k):
        lo = "−∞" if i == 0 else f"{edges[i - 1]:.4g}"
        hi = "+∞" if i == k - 1 else f"{edges[i]:.4g}"
        labels.append(f"[{lo}, {hi})")
    return labels, counts


def _merge_pairs(
    labels: list[str], a: np.ndarray, b: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    while len(labels) > MAX_NUMERIC_BARS:
        n = len(labels)
        pad = n % 2
        if pad:
            a, b = np.append(a, 0.0), np.append(b, 0.0)
            labels = [*labels, labels[-1]]
        a = a.reshape(-1, 2).sum(axis=1)
        b = b.reshape(-1, 2).sum(axis=1)
        labels = [
            labels[i].split(",")[0] + "," + labels[i + 1].split(",", 1)[1]
            for i in range(0, len(labels), 2)
        ]
    return labels, a, b


def _categorical_bars(base: Any, cur: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Top baseline categories, then "other" (known to the baseline), then "unseen" (new)."""
    base_counts: dict[str, int] = dict(getattr(base, "counts", {}) or {})
    cur_counts: dict[str, int] = dict(getattr(cur, "counts", {}) or {}) if cur is not None else {}
    top = sorted(base_counts, key=lambda c: (-base_counts[c], c))[:TOP_CATEGORIES]
    top_set = set(top)
    base_other = float(getattr(base, "other", 0) or 0) + sum(
        v for c, v in base_counts.items() if c not in top_set
    )
    cur_other = sum(v for c, v in cur_counts.items() if c in base_counts and c not in top_set)
    # Current rows in categories the baseline never saw; a current "other" bucket is
    # unseen too when the current profile only tracks the baseline's categories.
    cur_unseen = float(sum(v for c, v in cur_counts.items() if c not in base_counts))
    cur_unseen += float(getattr(cur, "other", 0) or 0) if cur is not None else 0.0
    labels = [*top, "(other)", "(unseen)"]
    b = np.array([base_counts[c] for c in top] + [base_other, 0.0], dtype=np.float64)
    c = np.array([cur_counts.get(t, 0) for t in top] + [cur_other, cur_unseen], dtype=np.float64)
    return labels, b, c


def _proportions(x: np.ndarray) -> np.ndarray:
    total = float(x.sum())
    return x / total if total > 0 else np.zeros_like(x)


def _svg_histogram(labels: Sequence[str], base: np.ndarray, cur: np.ndarray, drifted: bool) -> str:
    """Grouped bars (baseline grey, current blue/red) of two proportion vectors."""
    n = len(labels)
    if n == 0:
        return '<p class="muted">no histogram in the profiles</p>'
    width, height, pad_l, pad_b, pad_t = 640, 150, 34, 30, 8
    plot_w, plot_h = width - pad_l - 4, height - pad_b - pad_t
    top = max(float(base.max(initial=0.0)), float(cur.max(initial=0.0)), 1e-12)
    group = plot_w / n
    bar = max(group * 0.4, 0.5)
    cls = "cd" if drifted else "c"
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f'<text x="0" y="{pad_t + 8}">{100 * top:.0f}%</text>'
        f'<text x="0" y="{pad_t + plot_h}">0%</text>',
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 4}" '
        f'y2="{pad_t + plot_h}" stroke="#d0d7de"/>',
    ]
    for i, label in enumerate(labels):
        x = pad_l + i * group + group * 0.1
        hb = plot_h * float(base[i]) / top
        hc = plot_h * float(cur[i]) / top
        tip = f"{escape(label)}: baseline {_pct(float(base[i]))}, current {_pct(float(cur[i]))}"
        parts.append(
            f"<g><title>{tip}</title>"
            f'<rect class="b" x="{x:.1f}" y="{pad_t + plot_h - hb:.1f}" '
            f'width="{bar:.1f}" height="{hb:.1f}"/>'
            f'<rect class="{cls}" x="{x + bar:.1f}" y="{pad_t + plot_h - hc:.1f}" '
            f'width="{bar:.1f}" height="{hc:.1f}"/></g>'
        )
    # Axis labels: every label when few, else first / middle / last.
    shown = range(n) if n <= 14 else sorted({0, n // 2, n - 1})
    for i in shown:
        x = pad_l + (i + 0.5) * group
        text = labels[i] if len(labels[i]) <= 16 else labels[i][:15] + "…"
        parts.append(
            f'<text x="{x:.1f}" y="{height - 16}" text-anchor="middle">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _feature_section(index: int, name: str, row: Mapping[str, Any], base: Any, cur: Any) -> str:
    drifted = bool(row.get("drift"))
    kind = str(row.get("kind", "numeric"))
    if base is None:
        chart = '<p class="muted">not in the baseline profile</p>'
    elif hasattr(base, "edges"):
        labels, b = _numeric_bars(base)
        c = np.asarray(getattr(cur, "counts", np.zeros_like(b)), dtype=np.float64)
        if c.shape != b.shape:
            c = np.zeros_like(b)
        labels, b, c = _merge_pairs(labels, b, c)
        chart = _svg_histogram(labels, _proportions(b), _proportions(c), drifted)
    else:
        labels, b, c = _categorical_bars(base, cur)
        chart = _svg_histogram(labels, _proportions(b), _proportions(c), drifted)
    notes = [
        f"missing: baseline {_pct(row.get('missing_rate_baseline'))}, "
        f"current {_pct(row.get('missing_rate_current'))}",
        f"rows: baseline {_fmt(row.get('n_baseline'))}, current {_fmt(row.get('n'))}",
    ]
    if row.get("reasons"):
        notes.append("why: " + ", ".join(escape(str(r)) for r in row["reasons"]))
    if row.get("unseen_categories"):
        notes.append("unseen: " + ", ".join(escape(str(u)) for u in row["unseen_categories"]))
    flag = '<span class="badge drift">drift</span> ' if drifted else ""
    return (
        f'<section class="f" id="f{index}"><h3>{flag}{escape(name)} '
        f'<span class="muted">({escape(kind)})</span></h3>{chart}'
        f'<p class="muted">{" · ".join(notes)}</p></section>'
    )


# --------------------------------------------------------------------------- drift page

PREDICTIONS_LABEL = "model output (predictions)"


def _feature_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-feature results as dicts with a ``name``, the model output last."""
    rows = [{"name": k, **v} for k, v in (report.get("features") or {}).items()]
    prediction = report.get("prediction_drift")
    if prediction:
        rows.append({"name": PREDICTIONS_LABEL, "_predictions": True, **prediction})
    return rows


def _sort_key(row: Mapping[str, Any]) -> tuple[int, float, str]:
    """Drifted first, then by how far the score is past (or short of) its threshold."""
    score, threshold = row.get("score"), row.get("threshold")
    ratio = 0.0
    if isinstance(score, int | float) and math.isfinite(score):
        ratio = score / threshold if isinstance(threshold, int | float) and threshold else score
    return (0 if row.get("drift") else 1, -ratio, str(row["name"]))


def _verdict(report: Mapping[str, Any]) -> tuple[str, str]:
    if report.get("status") == "insufficient_data":
        return "insufficient", "INSUFFICIENT DATA"
    if report.get("dataset_drift"):
        return "drift", "DRIFT DETECTED"
    return "ok", "NO DRIFT"


def _score_row(index: int, r: Mapping[str, Any]) -> str:
    drifted = bool(r.get("drift"))
    mark = ' class="d"' if drifted else ""
    return (
        f'<tr{mark}><td><a href="#f{index}">{escape(str(r["name"]))}</a></td>'
        f"<td>{_fmt(r.get('kind'))}</td><td>{_fmt(r.get('method'))}</td>"
        f'<td class="n">{_fmt(r.get("score"))}</td>'
        f'<td class="n">{_fmt(r.get("threshold"))}</td>'
        f'<td class="n">{_fmt(r.get("p_value_adjusted"))}</td>'
        f"<td>{'<b>yes</b>' if drifted else 'no'}</td></tr>"
    )


def render_html(
    drift_report: Mapping[str, Any],
    baseline: Any,
    current: Any,
    title: str = "driftloop drift report",
) -> str:
    """The drift report as one self-contained HTML page.

    ``drift_report`` is ``DriftReport.to_dict()``; ``baseline`` and ``current`` are the
    DatasetProfiles it compared (current profiled on the baseline's bins), drawn as
    per-feature histograms: numeric bins as proportions of the finite values,
    categorical as the baseline's top categories, "(other)" and "(unseen)".
    """
    rows = sorted(_feature_rows(drift_report), key=_sort_key)
    cls, verdict = _verdict(drift_report)
    n_features = int(drift_report.get("n_features", len(drift_report.get("features") or {})))
    summary = [
        ("verdict", f'<span class="badge {cls}">{verdict}</span>'),
        ("reason", _fmt(drift_report.get("reason", ""))),
        ("rows (current)", _fmt(drift_report.get("n_rows"))),
        ("rows (baseline)", _fmt(drift_report.get("n_baseline_rows"))),
        ("malformed (skipped)", _fmt(drift_report.get("n_malformed", 0))),
        (
            "drifted features",
            f"{_fmt(drift_report.get('n_drifted', 0))} of {n_features} "
            f"({_pct(drift_report.get('drift_share'))})",
        ),
    ]
    if drift_report.get("missing_features"):
        missing = ", ".join(escape(str(m)) for m in drift_report["missing_features"])
        summary.append(("features absent from the input", missing))
    for key in ("endpoint", "window_start", "window_end", "generated_at"):
        if key in drift_report:
            summary.append((key.replace("_", " "), _fmt(drift_report[key])))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in summary)
    head = (
        "<tr><th>feature</th><th>kind</th><th>method</th><th>score</th><th>threshold</th>"
        "<th>p-value (BH adj.)</th><th>drift</th></tr>"
    )
    body = "".join(_score_row(i, r) for i, r in enumerate(rows))
    base_feats = getattr(baseline, "features", {}) or {}
    cur_feats = getattr(current, "features", {}) or {}
    sections = []
    for i, r in enumerate(rows):
        if r.get("_predictions"):
            b, c = getattr(baseline, "predictions", None), getattr(current, "predictions", None)
        else:
            b, c = base_feats.get(r["name"]), cur_feats.get(r["name"])
        sections.append(_feature_section(i, str(r["name"]), r, b, c))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><dl class="sum">{dl}</dl>'
        f"<h2>Scores</h2><table>{head}{body}</table>"
        '<h2>Distributions</h2><p class="legend muted">'
        '<span style="background:#9aa4ae"></span>baseline'
        '<span style="background:#1f6feb"></span>current'
        '<span style="background:#c62828"></span>current (drifted)</p>'
        f"{''.join(sections)}"
        '<p class="muted">Generated by driftloop. Numeric bars are proportions of the finite '
        "values; categorical bars of the present values.</p>"
        "</body></html>\n"
    )


# --------------------------------------------------------------------------- quality page


def render_quality_html(
    quality_report: Mapping[str, Any], title: str = "driftloop quality report"
) -> str:
    """The quality report (``QualityReport.to_dict()``) as a small self-contained HTML page."""
    status = str(quality_report.get("status", "ok"))
    if status == "insufficient_data":
        cls, verdict = "insufficient", "INSUFFICIENT DATA"
    elif quality_report.get("degraded"):
        cls, verdict = "drift", "DEGRADED"
    else:
        cls, verdict = "ok", "OK"
    summary = [
        ("verdict", f'<span class="badge {cls}">{verdict}</span>'),
        ("watched metric", _fmt(quality_report.get("metric"))),
        ("max drop", _fmt(quality_report.get("max_drop"))),
        ("reason", _fmt(quality_report.get("reason", ""))),
        ("matched labels", _fmt(quality_report.get("n_matched"))),
        ("labels without a prediction", _fmt(quality_report.get("n_unmatched_labels"))),
        ("predictions without a label", _fmt(quality_report.get("n_unlabelled"))),
        ("invalid pairs", _fmt(quality_report.get("n_invalid"))),
        ("malformed (skipped)", _fmt(quality_report.get("n_malformed"))),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in summary)
    watched = quality_report.get("metric")
    rows = []
    for name, m in (quality_report.get("metrics") or {}).items():
        mark = ' class="d"' if name == watched and quality_report.get("degraded") else ""
        rows.append(
            f"<tr{mark}><td>{escape(str(name))}{' (watched)' if name == watched else ''}</td>"
            f'<td class="n">{_fmt(m.get("current"))}</td>'
            f'<td class="n">{_fmt(m.get("baseline"))}</td>'
            f'<td class="n">{_fmt(m.get("drop"))}</td></tr>'
        )
    ref = "".join(
        f'<tr><td>{escape(str(k))}</td><td class="n">{_fmt(v)}</td></tr>'
        for k, v in (quality_report.get("reference") or {}).items()
    )
    cm = quality_report.get("confusion_matrix")
    cm_html = ""
    if cm:
        cm_html = (
            "<h2>Confusion matrix</h2><table>"
            "<tr><th></th><th>predicted 1</th><th>predicted 0</th></tr>"
            f'<tr><th>actual 1</th><td class="n">{_fmt(cm.get("tp"))}</td>'
            f'<td class="n">{_fmt(cm.get("fn"))}</td></tr>'
            f'<tr><th>actual 0</th><td class="n">{_fmt(cm.get("fp"))}</td>'
            f'<td class="n">{_fmt(cm.get("tn"))}</td></tr>'
            "</table>"
        )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        f'<dl class="sum">{dl}</dl><h2>Metrics</h2><table><tr><th>metric</th><th>current</th>'
        f"<th>baseline</th><th>drop (+ is worse)</th></tr>{''.join(rows)}</table>"
        + (f"<h2>Reference (best constant)</h2><table>{ref}</table>" if ref else "")
        + cm_html
        + "</body></html>\n"
    )
