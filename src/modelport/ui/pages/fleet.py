"""Fleet: the enrolled edge devices (hardware, release running and staged, health, last seen),
the releases, and a deployment's waves and devices, as the catalogue keeps them.

    GET /ui/fleet                      devices, releases and the newest deployment
    GET /ui/fleet/deployments/7        one deployment (404 page for an unknown id)
    GET /ui/api/fleet                  {"devices": [...], "releases": [...], "deployment": {...}}
    GET /ui/api/fleet/deployments/7    the deployment: {"id", "model", "state", "waves", ...}

The reads are the ones ``modelport fleet devices`` and ``modelport fleet status`` make
(``edge.fleet.store.Fleet``, ``edge.fleet.control.status``); the fleet server writes them.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import NotFound
from modelport.ui.layout import h, link, size, table, when
from modelport.ui.page import Nav, Page, Reply, Request, Route, json_reply

SHOWN = 500  # devices listed at most; ``modelport fleet devices`` lists them all


def _fleet(request: Request) -> Any:
    from modelport.edge.fleet.store import Fleet

    return Fleet(request.registry)


def _deployment(request: Request, deployment: int | None) -> dict[str, Any] | None:
    from modelport.edge.fleet.control import status

    try:
        return status(_fleet(request), deployment)
    except NotFound:
        if deployment is not None:
            raise
        return None  # no deployment yet


def _number(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise NotFound(f"no deployment {text[:20]!r}")
    return int(text)


def _everything(request: Request) -> dict[str, Any]:
    fleet = _fleet(request)
    return {
        "devices": fleet.devices()[:SHOWN],
        "releases": [_public(r) for r in fleet.releases()],
        "deployment": _deployment(request, None),
    }


def _public(release: dict[str, Any]) -> dict[str, Any]:
    return {k: release[k] for k in ("id", "name", "model", "format", "precision", "size")}


def api(request: Request) -> Reply:
    return json_reply(_everything(request))


def api_deployment(request: Request, number: str) -> Reply:
    return json_reply(_deployment(request, _number(number)))


def _devices(devices: list[dict[str, Any]]) -> str:
    rows = [
        (
            h(d["id"]) + (' <span class="bad">(revoked)</span>' if d["revoked"] else ""),
            h(d["hardware"]),
            h(", ".join(d["tags"])),
            h(d["current"] or "—"),
            h(d["staged"] or "—"),
            f'<span class="state {_health(d["health"])}">{h(d["health"])}</span>',
            when(d["last_seen"]) or '<span class="muted">never</span>',
            h((d["last_error"] or "")[:120]),
        )
        for d in devices
    ]
    return table(
        ["Device", "Hardware", "Groups", "Running", "Staged", "Health", "Last seen", "Last error"],
        rows,
        "Enrolled devices, by id",
        empty="No device is enrolled: modelport fleet token, then modelport edge agent.",
    )


def _health(health: str) -> str:
    return {"ok": "ok", "degraded": "warn", "unknown": "warn"}.get(health, "bad")


def _waves(info: dict[str, Any]) -> str:
    rows = []
    for i, w in enumerate(info["waves"]):
        done = (w["ok"] + w["failed"]) / w["size"] if w["size"] else 1.0
        progress = (
            f'<meter min="0" max="1" value="{done:.3f}" aria-label="wave {i + 1} done">'
            f"</meter> {done:.0%}"
            if w["started"]
            else '<span class="muted">not started</span>'
        )
        rows.append((
            h(i + 1) + (" (current)" if i == info["wave"] else ""), h(f"{w['percent']:g}%"),
            h(w["size"]), h(w["ok"]), h(w["failed"]), h(w["pending"]), progress,
        ))  # fmt: skip
    return table(["Wave", "Up to", "Devices", "Ok", "Failed", "Pending", "Progress"], rows,
                 f"Waves of deployment {info['id']}")  # fmt: skip


def _deployment_html(info: dict[str, Any] | None) -> str:
    if info is None:
        return '<p class="empty">No deployment yet: modelport fleet deploy MODEL --group G.</p>'
    number = info["id"]
    head = (
        f"<p>Deployment <strong>{h(number)}</strong> of <code>{h(info['model'])}</code> to "
        f"{h(', '.join(info['groups']))}: <strong>{h(info['state'])}</strong>"
        + (f" ({h(info['reason'])})" if info["reason"] else "")
        + f"; variants {h(', '.join(f'{k} → release {v}' for k, v in info['variants'].items()))}"
        ".</p>"
    )
    devices = table(
        ["Device", "Wave", "Hardware", "Release", "Status", "Running", "Error"],
        [
            (h(d["device_id"]), h(d["wave"] + 1), h(d["hardware"]), h(d["release_id"] or "—"),
             h(d["status"]), h(d["current"] or "—"), h((d["error"] or "")[:120]))
            for d in info["devices"]
        ],
        "Devices of the deployment",
    )  # fmt: skip
    older = f"/ui/fleet/deployments/{number - 1}"
    nav = f"<p>{link(older, f'← Deployment {number - 1}')}</p>" if number > 1 else ""
    return head + _waves(info) + devices + nav


def view(request: Request) -> Reply:
    found = _everything(request)
    releases = table(
        ["Release", "Model", "Format", "Precision", "Size"],
        [(h(r["id"]), h(r["model"]), h(r["format"]), h(r["precision"]), size(r["size"]))
         for r in found["releases"]],
        "Released bundles",
        empty="No release yet: modelport fleet release BUNDLE.",
    )  # fmt: skip
    body = (
        '<h2 id="devices">Devices</h2>'
        + _devices(found["devices"])
        + '<h2 id="deployment">Newest deployment</h2>'
        + _deployment_html(found["deployment"])
        + '<h2 id="releases">Releases</h2>'
        + releases
    )
    return request.page("Fleet", body)


def view_deployment(request: Request, number: str) -> Reply:
    info = _deployment(request, _number(number))
    return request.page(f"Deployment {number}", _deployment_html(info))


PAGE = Page(
    "fleet",
    routes=(
        Route("GET", "fleet", view),
        Route("GET", "fleet/deployments/{}", view_deployment),
        Route("GET", "api/fleet", api),
        Route("GET", "api/fleet/deployments/{}", api_deployment),
    ),
    nav=Nav("Fleet", "fleet"),
)
