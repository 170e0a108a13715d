"""Serving (under ``modelport serve`` only): what is loaded, in which state and why, and live
charts of requests/s, error rate, latency quantiles, queue wait and batch size.

    GET /ui/serving
    GET /ui/api/serving[?since=ms]   {"ready", "models": [{"name", "version", "state", "reason",
                           "default", "labels"}], "series": {"versions": {"digits:2": {"rps":
                           [[t, y], ...], "error_rate", "p50_ms", "p90_ms", "p99_ms",
                           "queue_ms", "batch", "in_flight"}}, "all": {...}, "samples": n}}
                          (``since``, epoch milliseconds: only the points after it)

States and reasons are the ones the V2 repository index reports (``DataPlane.repository_index``,
the model set's own table); the figures come from the server's metrics (``Metrics.snapshot``),
sampled when read (``ui/live.py``). Nothing here touches the request path.
"""

from __future__ import annotations

from typing import Any

from modelport.ui.layout import chip, h, link, model_url, table
from modelport.ui.live import ring_of
from modelport.ui.page import Nav, Page, Reply, Request, Route, json_reply

CHARTS = (
    ("rps", "Requests per second", "/s"),
    ("error_rate", "Error rate (4xx and 5xx)", ""),
    ("latency", "Latency quantiles, all models", " ms"),
    ("queue_ms", "Mean queue wait", " ms"),
    ("batch", "Mean batch size (rows per runtime call)", ""),
    ("in_flight", "Requests in flight, when sampled", ""),
)


def models_of(serving: Any, reasons: bool = True) -> list[dict[str, Any]]:
    """The repository index with, per model, the version plain URLs reach and its labels.
    Without ``reasons`` (a viewer) a load error's text is left out: the V2 repository index that
    reports it is an admin route, and the text can name paths."""
    models = serving.plane.models
    for _ in range(3):  # the event loop may change the tables while this thread reads them
        try:
            rows = serving.plane.repository_index()
            break
        except RuntimeError:
            continue
    else:
        rows = []
    out = []
    for row in rows:
        name = row["name"]
        version = int(row["version"]) if row["version"] else None
        labels = models.labels(name)
        out.append({
            **row, "version": version, "reason": row["reason"] if reasons else "",
            "default": version is not None and models.default_version(name) == version,
            "labels": sorted(alias for alias, v in labels.items() if v == version),
        })  # fmt: skip
    return out


def api(request: Request) -> Reply:
    serving = request.ctx.serving
    ring = ring_of(serving)
    ring.sample()
    since = request.number("since", 0, 0, 2**53) / 1000  # ms: only the points after it
    return json_reply(
        {
            "ready": serving.plane.ready(),
            "models": models_of(serving, request.user.role == "admin"),
            "series": ring.series(since),
        }
    )


def _state(state: str, ref: str = "") -> str:
    css = {"READY": "ok", "LOADING": "warn"}.get(state, "bad")
    key = f' data-ref="{h(ref)}"' if ref else ""
    return f'<span class="state {css}"{key}>{h(state)}</span>'


def view(request: Request) -> Reply:
    serving = request.ctx.serving
    ring_of(serving).sample()
    rows = [
        (
            link(model_url(m["name"]), m["name"]),
            link(model_url(m["name"], "versions", m["version"]), m["version"])
            if m["version"]
            else '<span class="muted">none</span>',
            _state(m["state"], f"{m['name']}:{m['version'] or ''}"),
            f'<span data-reason="{h(m["name"])}:{h(m["version"] or "")}">'
            f"{h(m['reason']) or '—'}</span>",
            ("yes" if m["default"] else "") + "".join(chip(alias) for alias in m["labels"]),
        )
        for m in models_of(serving, request.user.role == "admin")
    ]
    ready = serving.plane.ready()
    charts = "".join(
        f'<figure class="card live-chart"><figcaption>{h(title)}</figcaption>'
        f'<svg id="chart-{key}" class="chart" role="img" aria-label="{h(title)}" '
        f'data-series="{key}" data-unit="{h(unit)}"></svg><ul class="legend" '
        f'id="legend-{key}"></ul></figure>'
        for key, title, unit in CHARTS
    )
    body = (
        f'<p>Server: <span id="ready">{_state("READY" if ready else "LOADING")}</span> '
        '<span class="muted">(every designated model loaded)</span></p>'
        '<p id="changed" class="banner" role="status" hidden></p><div id="models">'
        + table(
            ["Model", "Version", "State", "Reason", "Default URL · labels"],
            rows,
            "Loaded models (the V2 repository index)",
            empty="No model is served: give modelport serve a model, or load one through "
            "the repository API.",
        )
        + '</div><h2 id="live">Live</h2><p class="muted" id="live-note" aria-live="polite">'
        "Sampled every 2 s while this page is open, from the server's own counters.</p>"
        f'<div class="grid charts" id="charts" data-url="/ui/api/serving">{charts}</div>'
    )
    return request.page("Serving", body, scripts=("live.js", "serving.js"))


PAGE = Page(
    "serving",
    routes=(Route("GET", "serving", view), Route("GET", "api/serving", api)),
    nav=Nav("Serving", "serving"),
    needs_serving=True,
)
