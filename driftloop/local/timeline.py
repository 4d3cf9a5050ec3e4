"""The demo's timeline: one static HTML page that tells the loop's story at a glance.

A reader should see, on one shared time axis, traffic and which model served it, the
share of drifted features in each checked window, a heatmap of per-feature drift
scores, the model's AUC from late ground truth, and markers where drift was found, a
retraining ran and the model changed. Each heatmap column links to that window's
drift report, by a path relative to the demo's output folder, so the page works from
the folder (or a zip of it) with no server.

The page is self-contained: inline SVG and CSS, no script, no font or image fetched.
The input is the `metrics.json` document the loop writes (see `render_timeline`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from driftloop.errors import DriftloopError

WIDTH = 1200
LEFT = 170  # room for feature names
RIGHT = 24
PLOT_W = WIDTH - LEFT - RIGHT

# Marker colours by event kind (and the legend text).
MARKERS: dict[str, tuple[str, str]] = {
    "onset": ("#6b7280", "drift onset (scenario)"),
    "drift": ("#dc2626", "drift found"),
    "quality": ("#b45309", "quality degraded"),
    "retrain_started": ("#ea580c", "retraining started"),
    "rejected": ("#7c3aed", "challenger rejected"),
    "deploy_started": ("#65a30d", "canary started"),
    "deployed": ("#16a34a", "challenger deployed"),
    "rollback": ("#111827", "rolled back"),
    "suppressed": ("#9ca3af", "retraining held (cooldown)"),
    "failed": ("#be123c", "retraining failed"),
}
MODEL_COLOURS = ("#3b82f6", "#10b981", "#f59e0b", "#8b5cf6", "#ec4899", "#14b8a6")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#111827;
background:#f9fafb}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 6px}
.sub{color:#4b5563;margin-bottom:14px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0 6px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#6b7280;font-size:12px}
.ok{color:#15803d}.bad{color:#b91c1c}
svg{background:#fff;border:1px solid #e5e7eb;border-radius:8px;display:block}
svg text{font:11px system-ui,sans-serif;fill:#374151}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:8px 0;font-size:12px;color:#374151}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-2px}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}th{background:#f3f4f6}
a{color:#1d4ed8}
"""


def _parse(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as exc:
        raise DriftloopError(f"timeline: bad timestamp {value!r} in metrics") from exc


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


class _Axis:
    """Maps simulated time to x pixels over the scenario's span."""

    def __init__(self, start: datetime, end: datetime) -> None:
        if end <= start:
            raise DriftloopError("timeline: the metrics' end is not after their start")
        self.start, self.end = start, end
        self.span = (end - start).total_seconds()

    def x(self, when: datetime) -> float:
        frac = (when - self.start).total_seconds() / self.span
        return LEFT + max(0.0, min(1.0, frac)) * PLOT_W

    def day_ticks(self) -> list[tuple[float, str]]:
        days = int(self.span // 86400)
        step = 1 if days <= 21 else 7
        out = []
        for d in range(0, days + 1, step):
            x = LEFT + (d * 86400 / self.span) * PLOT_W
            out.append((x, f"day {d}"))
        return out


def _heat_colour(score: float | None) -> str:
    """White at 0, amber near the threshold (score 1), deep red at twice it; grey = no data."""
    if score is None or math.isnan(score):
        return "#e5e7eb"
    t = max(0.0, min(score / 2.0, 1.0))
    if t < 0.5:  # white -> amber
        u = t / 0.5
        rgb = (255 - u * (255 - 252), 255 - u * (255 - 211), 255 - u * (255 - 77))
    else:  # amber -> red
        u = (t - 0.5) / 0.5
        rgb = (252 - u * (252 - 185), 211 - u * (211 - 28), 77 - u * (77 - 28))
    return "#{:02x}{:02x}{:02x}".format(*(round(c) for c in rgb))


def _frame(height: int, title: str, body: list[str], axis: _Axis, markers: list[str]) -> str:
    grid = []
    for x, label in axis.day_ticks():
        grid.append(
            f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height - 18}" stroke="#f3f4f6"/>'
        )
        grid.append(f'<text x="{x:.1f}" y="{height - 5}" text-anchor="middle">{_esc(label)}</text>')
    return (
        f'<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_esc(title)}"><text x="10" y="14" font-weight="600">{_esc(title)}</text>'
        + "".join(grid)
        + "".join(body)
        + "".join(markers)
        + "</svg>"
    )


def _markers(events: Sequence[dict[str, Any]], axis: _Axis, height: int, labels: bool) -> list[str]:
    out = []
    for ev in events:
        colour, legend = MARKERS.get(ev.get("kind", ""), ("#9ca3af", ev.get("kind", "")))
        x = axis.x(_parse(ev["time"]))
        dash = ' stroke-dasharray="5,4"' if ev.get("kind") == "onset" else ""
        out.append(
            f'<line class="marker marker-{_esc(ev.get("kind", ""))}" x1="{x:.1f}" y1="18" '
            f'x2="{x:.1f}" y2="{height - 18}" stroke="{colour}" stroke-width="1.6"{dash}>'
            f"<title>{_esc(ev.get('time', ''))}: {_esc(ev.get('text', legend))}</title></line>"
        )
        if labels:
            out.append(
                f'<circle cx="{x:.1f}" cy="22" r="4" fill="{colour}">'
                f"<title>{_esc(ev.get('text', legend))}</title></circle>"
            )
    return out


def _model_bands(models: Sequence[dict[str, Any]], axis: _Axis, top: int, bottom: int) -> list[str]:
    out = []
    for i, model in enumerate(models):
        colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
        x0 = axis.x(_parse(model["from"]))
        x1 = axis.x(_parse(model["to"])) if model.get("to") else LEFT + PLOT_W
        out.append(
            f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0):.1f}" height="{bottom - top}" '
            f'fill="{colour}" opacity="0.07"><title>{_esc(model["name"])}</title></rect>'
        )
    return out


def _model_colour(models: Sequence[dict[str, Any]]) -> Callable[[str], str]:
    index = {m["name"]: i for i, m in enumerate(models)}
    return lambda name: MODEL_COLOURS[index.get(name, len(index)) % len(MODEL_COLOURS)]


def _traffic_chart(metrics: dict[str, Any], axis: _Axis, markers: Sequence[dict[str, Any]]) -> str:
    height, top, bottom = 150, 26, 150 - 22
    traffic = metrics.get("traffic", [])
    peak = max((t.get("rows", 0) for t in traffic), default=0) or 1
    colour = _model_colour(metrics.get("models", []))
    body = [
        f'<text x="{LEFT - 8}" y="{top + 8}" text-anchor="end">{peak} rows</text>',
        f'<text x="{LEFT - 8}" y="{bottom}" text-anchor="end">0</text>',
    ]
    for bucket in traffic:
        x0, x1 = axis.x(_parse(bucket["start"])), axis.x(_parse(bucket["end"]))
        w = max(x1 - x0 - 1, 1)
        y = bottom
        by_model = bucket.get("by_model") or {"": bucket.get("rows", 0)}
        for name, rows in by_model.items():
            h = (bottom - top) * rows / peak
            y -= h
            body.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                f'fill="{colour(name)}"><title>{_esc(bucket["start"])}: {rows} rows '
                f"({_esc(name) or 'all'})</title></rect>"
            )
    return _frame(
        height,
        "Traffic (rows per window, coloured by the model that served them)",
        body,
        axis,
        _markers(markers, axis, height, False),
    )


def _drift_chart(metrics: dict[str, Any], axis: _Axis, markers: Sequence[dict[str, Any]]) -> str:
    height, top, bottom = 170, 26, 170 - 22
    threshold = float(metrics.get("drift_share_threshold", 0.0) or 0.0)
    body = _model_bands(metrics.get("models", []), axis, top, bottom)
    body += [
        f'<text x="{LEFT - 8}" y="{top + 8}" text-anchor="end">100% drifted</text>',
        f'<text x="{LEFT - 8}" y="{bottom}" text-anchor="end">0%</text>',
    ]
    if threshold > 0:
        y = bottom - (bottom - top) * threshold
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + PLOT_W}" y2="{y:.1f}" stroke="#dc2626" '
            f'stroke-dasharray="3,3" opacity="0.6"/><text x="{LEFT - 8}" y="{y + 4:.1f}" '
            f'text-anchor="end" fill="#dc2626">threshold {threshold:.0%}</text>'
        )
    for w in metrics.get("windows", []):
        x0, x1 = axis.x(_parse(w["start"])), axis.x(_parse(w["end"]))
        share = float(w.get("drift_share") or 0.0)
        h = max((bottom - top) * share, 1.0)
        fill = "#dc2626" if w.get("drifted") else "#60a5fa"
        body.append(
            f'<rect class="drift-bar" x="{x0:.1f}" y="{bottom - h:.1f}" '
            f'width="{max(x1 - x0 - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{fill}"><title>{_esc(w["start"])}: {share:.0%} of features '
            f"drifted, {w.get('n_rows', 0)} rows</title></rect>"
        )
    return _frame(
        height,
        "Share of drifted features per checked window (red: drift verdict)",
        body,
        axis,
        _markers(markers, axis, height, True),
    )


def _heatmap(metrics: dict[str, Any], axis: _Axis, markers: Sequence[dict[str, Any]]) -> str:
    features: list[str] = list(metrics.get("features", []))
    windows = metrics.get("windows", [])
    row_h = 16
    top = 26
    height = top + row_h * max(len(features), 1) + 24
    body = []
    for i, name in enumerate(features):
        y = top + i * row_h
        body.append(f'<text x="{LEFT - 8}" y="{y + 12}" text-anchor="end">{_esc(name)}</text>')
    for w in windows:
        x0, x1 = axis.x(_parse(w["start"])), axis.x(_parse(w["end"]))
        scores = w.get("scores") or {}
        cells = []
        for i, name in enumerate(features):
            score = scores.get(name)
            cells.append(
                f'<rect class="cell" x="{x0:.1f}" y="{top + i * row_h}" '
                f'width="{max(x1 - x0, 1):.1f}" '
                f'height="{row_h - 1}" fill="{_heat_colour(score)}"><title>{_esc(name)} '
                f"{_esc(w['start'])}: score {_fmt(score, 2)} (1 = threshold)</title></rect>"
            )
        if w.get("report"):
            body.append(f'<a href="{_esc(w["report"])}">' + "".join(cells) + "</a>")
        else:
            body.extend(cells)
    return _frame(
        height,
        "Per-feature drift score (1 = its threshold); click a column for its report",
        body,
        axis,
        _markers(markers, axis, height, False),
    )


def _auc_chart(metrics: dict[str, Any], axis: _Axis, markers: Sequence[dict[str, Any]]) -> str:
    height, top, bottom = 190, 26, 190 - 22
    points = [q for q in metrics.get("quality", []) if q.get("auc") is not None]
    values = [float(q["auc"]) for q in points]
    reference = metrics.get("reference_auc")
    lo_candidates = values + ([float(reference)] if reference is not None else [])
    lo = min(min(lo_candidates, default=0.5), 0.5)
    lo = math.floor(lo * 10) / 10
    hi = 1.0

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - lo) / (hi - lo)

    body = _model_bands(metrics.get("models", []), axis, top, bottom)
    for v in (lo, (lo + hi) / 2, hi):
        body.append(f'<text x="{LEFT - 8}" y="{y(v) + 4:.1f}" text-anchor="end">AUC {v:.2f}</text>')
    if reference is not None:
        body.append(
            f'<line x1="{LEFT}" y1="{y(float(reference)):.1f}" x2="{LEFT + PLOT_W}" '
            f'y2="{y(float(reference)):.1f}" stroke="#16a34a" stroke-dasharray="4,3"/>'
            f'<text x="{LEFT + PLOT_W - 4}" y="{y(float(reference)) - 4:.1f}" text-anchor="end" '
            f'fill="#15803d">pre-drift level {float(reference):.3f}</text>'
        )
    coords = []
    for q in points:
        mid = _parse(q["start"]) + (_parse(q["end"]) - _parse(q["start"])) / 2
        coords.append((axis.x(mid), y(float(q["auc"])), q))
    if coords:
        path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy, _ in coords)
        body.append(f'<polyline points="{path}" fill="none" stroke="#1d4ed8" stroke-width="2"/>')
        for x, yy, q in coords:
            fill = "#dc2626" if q.get("degraded") else "#1d4ed8"
            body.append(
                f'<circle class="auc-point" cx="{x:.1f}" cy="{yy:.1f}" r="3" fill="{fill}">'
                f"<title>{_esc(q['start'])}: AUC {float(q['auc']):.3f} on {q.get('n', 0)} labelled "
                f"rows</title></circle>"
            )
    else:
        body.append(
            f'<text x="{LEFT + 10}" y="{(top + bottom) / 2:.1f}">no labelled windows yet</text>'
        )
    return _frame(
        height,
        "Model quality: AUC of the serving model on late-arriving ground truth",
        body,
        axis,
        _markers(markers, axis, height, False),
    )


def _cards(summary: dict[str, Any]) -> str:
    cards = []
    for key, value in summary.items():
        text = _fmt(value) if isinstance(value, float) else str(value)
        cards.append(f'<div class="card"><b>{_esc(text)}</b><span>{_esc(key)}</span></div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


def _legend(models: Sequence[dict[str, Any]]) -> str:
    items = [f'<span><i style="background:{c}"></i>{_esc(t)}</span>' for c, t in MARKERS.values()]
    for i, m in enumerate(models):
        colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
        items.append(f'<span><i style="background:{colour}"></i>model {_esc(m["name"])}</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _event_table(events: Sequence[dict[str, Any]]) -> str:
    rows = []
    for ev in events:
        colour = MARKERS.get(ev.get("kind", ""), ("#9ca3af", ""))[0]
        text = _esc(ev.get("text", ""))
        if ev.get("link"):
            text = f'<a href="{_esc(ev["link"])}">{text}</a>'
        rows.append(
            f'<tr><td>{_esc(ev["time"])}</td><td><i style="color:{colour}">&#9679;</i> '
            f"{_esc(ev.get('kind', ''))}</td><td>{text}</td></tr>"
        )
    if not rows:
        return "<p>No events.</p>"
    return (
        "<table><tr><th>time (UTC)</th><th>event</th><th>what</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_timeline(metrics: dict[str, Any]) -> str:
    """The HTML page for a `metrics.json` document.

    Fields read: `start`, `end` (ISO UTC), `endpoint`, `scenario` (dict, shown as text),
    `features` (names, heatmap rows), `windows` ([{start, end, n_rows, drift_share,
    drifted, scores: {feature: score relative to its threshold}, report: relative
    link}]), `drift_share_threshold`, `traffic` ([{start, end, rows, by_model}]),
    `quality` ([{start, end, n, auc, degraded}]), `reference_auc`, `models` ([{name,
    from, to}]), `events` ([{time, kind, text, link?}]) and `summary` ({label: value}).
    """
    try:
        axis = _Axis(_parse(metrics["start"]), _parse(metrics["end"]))
    except KeyError as exc:
        raise DriftloopError(f"timeline: metrics lack {exc.args[0]!r}") from exc
    events = sorted(metrics.get("events", []), key=lambda e: e["time"])
    scenario = metrics.get("scenario", {})
    subtitle = ", ".join(f"{k} {v}" for k, v in scenario.items())
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>driftloop timeline: {_esc(metrics.get('endpoint', ''))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>driftloop closed loop: {_esc(metrics.get('endpoint', 'endpoint'))}</h1>",
        f"<div class='sub'>{_esc(metrics['start'])} to {_esc(metrics['end'])} (simulated) · "
        f"{_esc(subtitle)}</div>",
        _cards(metrics.get("summary", {})),
        _legend(metrics.get("models", [])),
        _traffic_chart(metrics, axis, events),
        "<div style='height:8px'></div>",
        _drift_chart(metrics, axis, events),
        "<div style='height:8px'></div>",
        _heatmap(metrics, axis, events),
        "<div style='height:8px'></div>",
        _auc_chart(metrics, axis, events),
        "<h2>Events</h2>",
        _event_table(events),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_timeline(metrics: dict[str, Any], path: Path) -> Path:
    """Render and write the page; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_timeline(metrics), encoding="utf-8")
    return path
