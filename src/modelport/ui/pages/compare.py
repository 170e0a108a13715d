"""Two versions side by side: metadata, metrics (with the difference), a plot of the metrics,
and each one's stored reports and attached plots.

    GET /ui/models/digits/compare?a=2&b=3
    GET /ui/api/models/digits/compare?a=2&b=3     {"a", "b", "metrics": [...], "differs": [...]}
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.errors import InvalidInput
from modelport.registry.records import ModelVersion
from modelport.ui import svg
from modelport.ui.layout import h, link, model_url, number, size, table
from modelport.ui.page import Page, Reply, Request, Route, json_reply
from modelport.ui.pages.model import model_name
from modelport.ui.pages.version import attachments_html, report


def comparison(request: Request, name: str) -> tuple[ModelVersion, ModelVersion, dict[str, Any]]:
    name = model_name(name)
    a, b = request.number("a", None, 1), request.number("b", None, 1)
    if a is None or b is None:
        raise InvalidInput("give two versions to compare: ?a=1&b=2")
    va, vb = (request.registry.get(f"{name}:{n}") for n in (a, b))
    keys = sorted(set(va.metrics) | set(vb.metrics))
    metrics = [
        {
            "name": k,
            "a": va.metrics.get(k),
            "b": vb.metrics.get(k),
            "delta": (vb.metrics[k] - va.metrics[k])
            if k in va.metrics and k in vb.metrics
            else None,
        }
        for k in keys
    ]
    da, db = va.to_dict(), vb.to_dict()
    skip = {"name", "version", "created_at", "metrics"}
    differs = sorted(k for k in da if k not in skip and da[k] != db[k])
    return va, vb, {"a": da, "b": db, "metrics": metrics, "differs": differs}


def api_compare(request: Request, name: str) -> Reply:
    return json_reply(comparison(request, name)[2])


def compare_view(request: Request, name: str) -> Reply:
    va, vb, found = comparison(request, name)
    rows = []
    fields = (
        "format",
        "size",
        "sha256",
        "parent",
        "transform",
        "transform_params",
        "aliases",
        "description",
        "created_by",
        "tags",
        "signature",
    )
    for key in fields:
        a, b = found["a"][key], found["b"][key]
        show = (
            size
            if key == "size"
            else (lambda v: h(orjson.dumps(v).decode()) if isinstance(v, (dict, list)) else h(v))
        )
        mark = ' <strong class="error">≠</strong>' if key in found["differs"] else ""
        rows.append((h(key) + mark, show(a), show(b)))
    metric_rows = [
        (
            h(m["name"]),
            number(m["a"]),
            number(m["b"]),
            number(m["delta"]) if m["delta"] is not None else "—",
        )
        for m in found["metrics"]
    ]
    plot = svg.bars([(m["name"], m["a"], m["b"]) for m in found["metrics"]], (va.ref, vb.ref))
    body = (
        f"<p>{link(model_url(va.name), '← ' + va.name)}</p>"
        + table(["Field", va.ref, vb.ref], rows, "Metadata side by side")
        + "<h2>Metrics</h2>"
        + table(
            ["Metric", va.ref, vb.ref, "B − A"],
            metric_rows,
            "Metrics side by side",
            empty="Neither version has metrics.",
        )
        + f"<h2>Plot</h2>{plot}<h2>Reports and attachments</h2>"
        + '<div class="grid">'
        + "".join(
            f'<section class="card"><h3>{h(v.ref)}</h3>{report(v, 4)}'
            f"{attachments_html(request, v)}</section>"
            for v in (va, vb)
        )
        + "</div>"
    )
    return request.page(f"Compare {va.ref} and {vb.ref}", body)


PAGE = Page(
    "compare",
    routes=(
        Route("GET", "models/{}/compare", compare_view),
        Route("GET", "api/models/{}/compare", api_compare),
    ),
)
