"""Monitoring: drift per feature of every tracked version (PSI, KS, Jensen-Shannon against the
version's reference, with the thresholds and flags) and over time, and accuracy from feedback.

    GET /ui/monitoring
    GET /ui/api/monitoring   {"serving": true, "versions": [{"model", "version", "rows",
                              "window", "min_rows", "thresholds", "kinds", "scores",
                              "flagged"}], "history": {"mlp:1": {"x0": [[t, psi, ks, js,
                              flagged], ...]}}, "accuracy": [{"model", "version", "kind",
                              "value"}], "skipped": n}

The figures are the server's own drift trackers and feedback joins (``monitoring.monitor``),
as ``/metrics`` exports them; the history is the scorings sampled while a page was open
(``ui/live.py``). Under ``modelport ui`` nothing is served, so there is nothing to monitor: the
page says so.
"""

from __future__ import annotations

from typing import Any

from modelport.ui.layout import h, link, model_url, table
from modelport.ui.live import ring_of
from modelport.ui.page import Nav, Page, Reply, Request, Route, json_reply

METHODS = ("psi", "ks", "js")


def state(request: Request) -> dict[str, Any]:
    serving = request.ctx.serving
    monitor = getattr(serving, "monitor", None)
    if monitor is None:
        return {"serving": False, "versions": [], "history": {}, "accuracy": [], "skipped": 0}
    ring = ring_of(serving)
    ring.sample()
    accuracy = [
        {"model": m, "version": v, "kind": kind, "value": value}
        for m, v, kind, value in monitor.feedbacks.series()
    ]
    return {"serving": True, "versions": monitor.drift_state(), "history": ring.drift(),
            "accuracy": accuracy, "skipped": monitor.skipped}  # fmt: skip


def api(request: Request) -> Reply:
    return json_reply(state(request))


def _cell(value: float | None, threshold: float) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    text = h(f"{value:.4f}")
    return f'<strong class="bad">{text}</strong>' if value >= threshold else text


def _version(v: dict[str, Any]) -> str:
    ref = f"{v['model']}:{v['version']}"
    t = v["thresholds"]
    title = (
        f'<h2 id="drift-{h(ref)}">{link(model_url(v["model"], "versions", v["version"]), ref)}</h2>'
    )
    note = (
        f"{v['rows']} rows in the window of {v['window']}; thresholds PSI {t['psi']:g}, "
        f"KS {t['ks']:g} (numeric), Jensen-Shannon {t['js']:g} (categorical)."
    )
    if not v["scores"]:
        waiting = f"Not scored yet: drift is scored from {v['min_rows']} rows on."
        return title + f'<p class="muted">{h(note)}</p><p class="empty">{h(waiting)}</p>'
    rows = [
        (
            h(feature),
            h(v["kinds"].get(feature, "")),
            *(_cell(scores.get(m), t[m]) for m in METHODS),
            '<strong class="bad">drifted</strong>' if v["flagged"].get(feature) else "ok",
        )
        for feature, scores in v["scores"].items()
    ]
    chart = (
        f'<figure class="card live-chart"><figcaption>PSI per feature over time</figcaption>'
        f'<svg class="chart" role="img" aria-label="PSI of {h(ref)} per feature over time" '
        f'data-ref="{h(ref)}"></svg><ul class="legend" data-legend="{h(ref)}"></ul></figure>'
    )
    return (
        title
        + f'<p class="muted">{h(note)}</p>'
        + table(["Feature", "Kind", "PSI", "KS", "JS", "Flag"], rows, f"Drift of {ref}")
        + chart
    )


def view(request: Request) -> Reply:
    found = state(request)
    if not found["serving"]:
        body = (
            '<p class="empty" id="no-monitor">Drift and accuracy are tracked inside '
            "<code>modelport serve</code>, on the requests it answers; this process serves no "
            "models. Open the dashboard of a serving process at its <code>/ui</code>.</p>"
        )
        return request.page("Monitoring", body)
    versions = found["versions"]
    drift = "".join(_version(v) for v in versions) or (
        '<p class="empty">No served version has reference statistics, so none is tracked: '
        "<code>modelport monitor baseline MODEL:VERSION DATA</code> stores them.</p>"
    )
    accuracy = table(
        ["Version", "Figure", "Value"],
        [(h(f"{a['model']}:{a['version']}"), h(a["kind"]), h(f"{a['value']:.4f}"))
         for a in found["accuracy"]],
        "Accuracy from feedback",
        empty="No feedback yet: POST /v2/models/NAME/feedback with request ids and ground truth.",
    )  # fmt: skip
    body = (
        f'<div id="drift" data-url="/ui/api/monitoring">{drift}</div>'
        '<h2 id="accuracy">Accuracy</h2>'
        + accuracy
        + f'<p class="muted">Requests the drift backlog had no room for: {found["skipped"]}.</p>'
    )
    return request.page("Monitoring", body, scripts=("live.js", "monitoring.js"))


PAGE = Page(
    "monitoring",
    routes=(Route("GET", "monitoring", view), Route("GET", "api/monitoring", api)),
    nav=Nav("Monitoring", "monitoring"),
)
