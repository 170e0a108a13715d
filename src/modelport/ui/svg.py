"""Inline SVG drawn on the server: paired bars, the lineage graph and the alias timeline.

    bars([("accuracy", 0.91, 0.90), ("latency_ms_b1", 0.21, 0.12)], ("digits:1", "digits:2"))
    lineage([[root], [child, ...], ...], {"digits:1": 3}, "digits:2")   # a tree, left to right
    timeline(events, now)                    # one lane per alias, a mark per move

Colours come from CSS classes (``s1``..``s5``), so light and dark themes both read; every
drawing has a ``<title>`` and the page shows the same facts as a table for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modelport.registry.records import Event, ModelVersion
from modelport.ui.layout import h, model_url

WIDTH = 720


def _svg(kind: str, height: float, title: str, body: str, width: float = WIDTH) -> str:
    return (
        f'<svg class="{kind}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" '
        f'aria-label="{h(title)}" xmlns="http://www.w3.org/2000/svg"><title>{h(title)}</title>'
        f"{body}</svg>"
    )


def short(value: Any, limit: int = 10) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def transform_label(version: ModelVersion, limit: int = 34) -> str:
    """``quantize mode=dynamic, bits=8``: the transform and its first scalar parameters."""
    name = version.transform or "derived"
    params = version.transform_params or {}
    scalars = [
        f"{k}={short(v)}"
        for k, v in params.items()
        if isinstance(v, (str, int, float, bool)) and v is not None
    ]
    text = name + (" " + ", ".join(scalars) if scalars else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bars(rows: Sequence[tuple[str, float | None, float | None]], names: tuple[str, str]) -> str:
    """Two bars per metric, each scaled to the larger of the pair (metrics differ in unit)."""
    rows = [r for r in rows if r[1] is not None or r[2] is not None][:24]
    if not rows:
        return '<p class="empty">No metric to plot.</p>'
    label_w, row_h, bar_h = 190, 34, 12
    span = WIDTH - label_w - 90
    parts = []
    for i, (metric, a, b) in enumerate(rows):
        y = 8 + i * row_h
        top = max(abs(a or 0.0), abs(b or 0.0)) or 1.0
        parts.append(f'<text x="0" y="{y + 16}">{h(short(metric, 28))}</text>')
        for j, (value, css) in enumerate(((a, "s1"), (b, "s2"))):
            by = y + j * (bar_h + 2)
            if value is None:
                parts.append(f'<text class="label" x="{label_w}" y="{by + 10}">none</text>')
                continue
            w = max(abs(value) / top * span, 1.0)
            parts.append(
                f'<rect class="{css}" x="{label_w}" y="{by}" width="{w:.1f}" '
                f'height="{bar_h}"/><text class="label" x="{label_w + w + 4:.1f}" '
                f'y="{by + 10}">{h(short(value))}</text>'
            )
    legend = (
        f'<ul class="legend"><li><span class="swatch s1"></span>{h(names[0])}</li>'
        f'<li><span class="swatch s2"></span>{h(names[1])}</li></ul>'
    )
    title = f"Metrics of {names[0]} and {names[1]}, each pair scaled to its larger value"
    return legend + _svg("chart", 16 + len(rows) * row_h, title, "".join(parts))


NODE_W, NODE_H, GAP_X, GAP_Y = 180, 40, 230, 52


def _node(version: ModelVersion, x: float, y: float, here: bool, more: int) -> str:
    css = "node here" if here else "node"
    ref = h(version.ref)
    href = h(model_url(version.name, "versions", version.version))
    second = transform_label(version, 26) if version.parent else version.format
    extra = (
        f'<text class="label" x="{x + NODE_W + 4:.0f}" y="{y + 36:.0f}">+{more}</text>'
        if more
        else ""
    )
    return (
        f'<a href="{href}" class="{css}" aria-label="{ref}: {h(second)}"><rect x="{x:.0f}" '
        f'y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6"/><text x="{x + 8:.0f}" '
        f'y="{y + 16:.0f}">{ref}</text><text class="label" x="{x + 8:.0f}" y="{y + 32:.0f}">'
        f"{h(second)}</text></a>{extra}"
    )


def lineage(levels: Sequence[Sequence[ModelVersion]], more: dict[str, int], here: str) -> str:
    """A tree drawn left to right: ``levels[0]`` the oldest ancestor shown, each next level the
    children of the one before; each child's box names its transform and first parameters,
    ``more[ref]`` counts children left out. ``here`` is highlighted."""
    where: dict[str, tuple[float, float]] = {}
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 z" class="label"/>'
        "</marker></defs>"
    ]
    tallest = max(len(level) for level in levels)
    for col, level in enumerate(levels):
        offset = (tallest - len(level)) * GAP_Y / 2
        for row, version in enumerate(level):
            x, y = 10 + col * GAP_X, 10 + offset + row * GAP_Y
            where[version.ref] = (x, y)
            if version.parent in where:
                px, py = where[version.parent]
                x1, y1, y2 = px + NODE_W, py + NODE_H / 2, y + NODE_H / 2
                mid = (x1 + x) / 2
                parts.append(
                    f'<path class="edge" d="M{x1:.0f} {y1:.0f} C{mid:.0f} {y1:.0f} '
                    f'{mid:.0f} {y2:.0f} {x:.0f} {y2:.0f}" marker-end="url(#arrow)"/>'
                )
            parts.append(_node(version, x, y, version.ref == here, more.get(version.ref, 0)))
    width = 10 + (len(levels) - 1) * GAP_X + NODE_W + 40
    height = 20 + tallest * GAP_Y
    count = sum(len(level) for level in levels)
    title = f"Lineage around {here}: {count} version(s) in {len(levels)} generation(s)"
    return _svg("graph", height, title, "".join(parts), max(width, 300))


def timeline(events: Sequence[Event], now: datetime) -> str:
    """Each alias a lane; a mark where it moved, labelled with the version it moved to."""
    if not events:
        return '<p class="empty">No alias has moved yet.</p>'
    lanes = sorted({e.alias or "" for e in events})
    left, right, lane_h = 110, 30, 40
    t0 = events[0].at.timestamp()
    t1 = max(now.timestamp(), events[-1].at.timestamp(), t0 + 1)
    span = WIDTH - left - right

    def x(at: datetime) -> float:
        return left + (at.timestamp() - t0) / (t1 - t0) * span

    parts = []
    for i, lane in enumerate(lanes):
        y = 24 + i * lane_h
        css = f"s{i % 5 + 1}"
        parts.append(
            f'<text x="0" y="{y + 4}">{h(short(lane, 14))}</text><line class="axis" '
            f'x1="{left}" y1="{y}" x2="{WIDTH - right}" y2="{y}"/>'
        )
        mine = [e for e in events if (e.alias or "") == lane]
        for k, event in enumerate(mine):
            end = x(mine[k + 1].at) if k + 1 < len(mine) else x(now)
            start = x(event.at)
            if event.action != "alias_remove":
                parts.append(
                    f'<line class="line {css}" x1="{start:.1f}" y1="{y}" x2="{end:.1f}" y2="{y}"/>'
                )
            label = (
                "×"
                if event.version is None or event.action == "alias_remove"
                else (f"v{event.version}" + ("↩" if event.action == "rollback" else ""))
            )
            parts.append(
                f'<circle class="{css}" cx="{start:.1f}" cy="{y}" r="5"><title>'
                f"{h(event.action)} {h(lane)} → {h(event.version)} at "
                f"{h(event.at.isoformat(timespec='seconds'))} by {h(event.actor)}"
                f'</title></circle><text class="label" x="{start - 8:.1f}" '
                f'y="{y - 9}">{h(label)}</text>'
            )
    height = 24 + len(lanes) * lane_h
    axis = (
        f'<text class="label" x="{left}" y="{height - 4}">'
        f"{h(events[0].at.strftime('%Y-%m-%d %H:%M'))}</text>"
        f'<text class="label" x="{WIDTH - right - 80}" y="{height - 4}">now</text>'
    )
    title = f"Alias history: {len(events)} move(s) of {len(lanes)} alias(es)"
    return _svg("timeline", height + 4, title, "".join(parts) + axis)
