"""One version: files, signature, metrics, tags, attachments, lineage, its report.

    GET /ui/models/digits/versions/3
    GET /ui/api/models/digits/versions/3          version + children + attachments
    GET /ui/api/models/digits/versions/3/attachments/report-plot    the attached file

A compression or conversion stores its report on the new version (metrics measured side by
side with the parent, the transform's parameters, the parity record); files attached to a
version (``registry.attachments``) are listed, and PNG/JPEG ones shown as pictures.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.errors import InvalidInput, NotFound
from modelport.registry import browse
from modelport.registry.attachments import PREFIX
from modelport.registry.records import ModelVersion
from modelport.ui import svg
from modelport.ui.layout import h, link, model_url, number, pairs, size, table, url, when
from modelport.ui.page import Page, Reply, Request, Route, json_reply
from modelport.ui.pages.model import from_cell, model_name, version_number

IMAGES = {b"\x89PNG\r\n\x1a\n": b"image/png", b"\xff\xd8\xff": b"image/jpeg"}
MAX_ATTACHMENT = 64 << 20  # bytes served through the dashboard; larger: modelport export


def _version(request: Request, name: str, number_text: str) -> ModelVersion:
    name = model_name(name)
    return request.registry.get(f"{name}:{version_number(number_text, name)}")


def attachments(version: ModelVersion) -> dict[str, str]:
    return {k[len(PREFIX) :]: v for k, v in version.tags.items() if k.startswith(PREFIX)}


def _kind_of(data: bytes) -> bytes | None:
    return next((kind for magic, kind in IMAGES.items() if data.startswith(magic)), None)


def _children(request: Request, version: ModelVersion) -> browse.Page:
    return browse.children(request.registry, version.name, version.version, 50)


ANCESTORS, GENERATIONS, PER_PARENT, MOST = 3, 6, 8, 40  # bounds of the drawn lineage


def lineage_levels(
    request: Request, version: ModelVersion
) -> tuple[list[list[ModelVersion]], dict[str, int]]:
    """Generations from the oldest ancestor shown (up to 3 above ``version``) down to two below
    it: each parent's first children, always including the way to ``version``."""
    chain = browse.ancestors(request.registry, version, ANCESTORS)
    path = list(reversed(chain))
    levels, more = [[path[0]]], {}
    depth = len(path) + 2  # generations to draw: the path, then two below ``version``
    while len(levels) < min(depth, GENERATIONS) and sum(map(len, levels)) < MOST:
        parents = levels[-1]
        kids, totals = browse.children_of(
            request.registry, [(p.name, p.version) for p in parents], PER_PARENT
        )
        level: list[ModelVersion] = []
        for p in parents:
            mine = kids.get(p.ref, [])
            on_path = path[len(levels)] if len(levels) < len(path) else None
            if (
                on_path is not None
                and on_path.parent == p.ref
                and on_path.ref not in {k.ref for k in mine}
            ):
                mine = [*mine[: PER_PARENT - 1], on_path]
            more[p.ref] = totals.get(p.ref, 0) - len(mine)
            level.extend(mine)
        if not level:
            break
        levels.append(level[: MOST - sum(map(len, levels))])
    return levels, {ref: n for ref, n in more.items() if n > 0}


def lineage_of(request: Request, version: ModelVersion) -> str:
    levels, more = lineage_levels(request, version)
    edges = [v for level in levels[1:] for v in level]
    rows = [
        (
            link(model_url(v.name, "versions", v.version), v.ref),
            from_cell(v),
            h(orjson.dumps(v.transform_params or {}).decode()),
        )
        for v in edges
    ]
    return svg.lineage(levels, more, version.ref) + table(
        ["Version", "Made from", "Parameters"],
        rows,
        "Lineage edges",
        empty="Registered directly: no parent and no children.",
    )


def api_version(request: Request, name: str, number_text: str) -> Reply:
    version = _version(request, name, number_text)
    kids = _children(request, version)
    return json_reply(
        {
            **version.to_dict(),
            "attachments": attachments(version),
            "children": [k.ref for k in kids.items],
            "children_total": kids.total,
        }
    )


def api_attachment(request: Request, name: str, number_text: str, kind: str) -> Reply:
    version = _version(request, name, number_text)
    digest = attachments(version).get(kind)
    if digest is None:
        raise NotFound(f"{version.ref} has no attachment {kind[:64]!r}")
    path = request.registry.blobs.open_verified(digest)
    if path.stat().st_size > MAX_ATTACHMENT:
        raise InvalidInput(
            f"the attachment is over {MAX_ATTACHMENT >> 20} MiB: use 'modelport export' for it"
        )
    data = path.read_bytes()
    kind_header = _kind_of(data)
    if kind_header is not None:
        return 200, data, [(b"content-type", kind_header)]
    disposition = f'attachment; filename="{version.name}-{version.version}-{kind}"'.encode()
    return (
        200,
        data,
        [(b"content-type", b"application/octet-stream"), (b"content-disposition", disposition)],
    )


def attachments_html(request: Request, version: ModelVersion) -> str:
    found = attachments(version)
    rows, pictures = [], []
    for kind, digest in sorted(found.items()):
        href = (
            "/ui/api"
            + model_url(version.name, "versions", version.version, "attachments", kind)[3:]
        )
        rows.append((link(href, kind), f"<code>{h(digest[:16])}</code>"))
        with request.registry.blobs.open_verified(digest).open("rb") as f:
            if _kind_of(f.read(8)) is not None:
                pictures.append(
                    f'<figure><img class="plot" src="{h(href)}" alt="{h(kind)} of '
                    f'{h(version.ref)}"><figcaption>{h(kind)}</figcaption></figure>'
                )
    return table(
        ["Attachment", "sha256"], rows, "Attachments", empty="No files attached."
    ) + "".join(pictures)


def _facts(version: ModelVersion) -> dict[str, str]:
    return {
        "Format": h(version.format),
        "Size": size(version.size),
        "Files": h(len(version.files)),
        "sha256": f"<code>{h(version.sha256)}</code>",
        "Entry point": f"<code>{h(version.entrypoint)}</code>",
        "Created": when(version.created_at),
        "By": h(version.created_by),
        "Aliases": h(", ".join(version.aliases) or "none"),
        "Made from": from_cell(version),
        "Description": h(version.description or "—"),
    }


def report(version: ModelVersion, level: int = 2) -> str:
    """What a compression or conversion measured against the parent, stored as ``X`` and
    ``parent_X`` metrics on the new version: a table and paired bars."""
    rows = [
        (k, version.metrics[f"parent_{k}"], v)
        for k, v in sorted(version.metrics.items())
        if f"parent_{k}" in version.metrics
    ]
    if not rows or not version.parent:
        return ""
    cells = [(h(k), number(p), number(v), f"{v / p:.3g}×" if p else "—") for k, p, v in rows]
    return (
        f"<h{level}>Report against its parent</h{level}>"
        + table(["Measure", version.parent, version.ref, "Ratio"], cells, "Report")
        + svg.bars(rows, (version.parent, version.ref))
    )


def _indented(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _signature(version: ModelVersion) -> str:
    sig = version.signature.to_dict()
    rows = [
        (h(kind), h(t.get("name")), h(t.get("datatype") or t.get("dtype")), h(t.get("shape")))
        for kind in ("inputs", "outputs")
        for t in sig.get(kind, [])
    ]
    return table(["", "Tensor", "Type", "Shape"], rows, "Signature", empty="No signature.")


def view(request: Request, name: str, number_text: str) -> Reply:
    version = _version(request, name, number_text)
    facts = "".join(f"<dt>{h(k)}</dt><dd>{v}</dd>" for k, v in _facts(version).items())
    files = table(
        ["Path", "Size", "sha256"],
        [(h(f.path), size(f.size), f"<code>{h(f.sha256[:16])}</code>") for f in version.files],
        "Files",
    )
    tags = {k: v for k, v in version.tags.items() if not k.startswith(PREFIX)}
    compare = ""
    if version.parent and version.parent.startswith(version.name + ":"):
        a = version.parent.rpartition(":")[2]
        compare = " · " + link(
            url(model_url(version.name, "compare"), a=a, b=version.version),
            "Compare with its parent",
        )
    params = version.transform_params
    body = (
        f"<p>{link(model_url(version.name), '← ' + version.name)}{compare}</p>"
        f'<div class="grid"><section class="card"><h2>About</h2><dl class="pairs">{facts}</dl>'
        f'</section><section class="card"><h2>Metrics</h2>{pairs(version.metrics)}</section>'
        f'<section class="card"><h2>Tags</h2>{pairs(tags)}</section></div>'
        + (f"<h2>Transform parameters</h2><pre>{h(_indented(params))}</pre>" if params else "")
        + report(version)
        + f"<h2>Lineage</h2>{lineage_of(request, version)}"
        f"<h2>Signature</h2>{_signature(version)}<h2>Files</h2>{files}"
        f"<h2>Attachments</h2>{attachments_html(request, version)}"
    )
    return request.page(f"{version.name} version {version.version}", body)


PAGE = Page(
    "version",
    routes=(
        Route("GET", "models/{}/versions/{}", view),
        Route("GET", "api/models/{}/versions/{}", api_version),
        Route("GET", "api/models/{}/versions/{}/attachments/{}", api_attachment),
    ),
)
