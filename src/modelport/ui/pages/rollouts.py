"""Rollouts: every rollout's state and step; per model the plan's steps, the gates on the last
windows, the decision log with its evidence, and (for admins) pause, resume, promote and abort.

    GET  /ui/rollouts                   /ui/api/rollouts  {"items": [rollout, ...]}
    GET  /ui/rollouts/digits            /ui/api/rollouts/digits  {"status", "history"}
    POST /ui/api/rollouts/digits/promote  {"expected": {"id": 3, "state": "canary", "step": 1}}
         200 {"message", "rollout"}; 409 when the rollout is no longer in the state the page
         showed (nothing is done); 403 without the admin role

The calls are the Python API the CLI's ``modelport rollout ...`` and the ``/v2/rollouts`` admin
routes make (``modelport.rollouts``): the same checks, decision log entries and audit records.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport import rollouts
from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import browse
from modelport.registry.rollouts import Rollout
from modelport.rollouts.api import describe
from modelport.rollouts.decide import operate
from modelport.rollouts.plan import Plan
from modelport.serving.rest_rollouts import COMMANDS
from modelport.ui.layout import h, hidden, link, model_url, table, when
from modelport.ui.page import Nav, Page, Reply, Request, Route, json_reply
from modelport.ui.pages.model import model_name

SHOWN = 200  # rollouts listed at most
LABELS = {"pause": "Pause", "resume": "Resume", "promote": "Promote", "abort": "Abort"}


def _url(name: str) -> str:
    return "/ui/rollouts/" + model_url(name)[len("/ui/models/") :]


def api_list(request: Request) -> Reply:
    found = request.registry.rollouts.list()
    return json_reply({"total": len(found), "items": [r.to_dict() for r in found[:SHOWN]]})


def api_one(request: Request, name: str) -> Reply:
    name = model_name(name)
    found = rollouts.history(request.registry, name)
    return json_reply({
        "status": rollouts.status(request.registry, name),
        "history": [{**r.to_dict(), "decisions": [d.to_dict() for d in log]} for r, log in found],
    })  # fmt: skip


def act(request: Request, name: str, command: str) -> Reply:
    """Run ``command`` if the rollout is still where the page showed it."""
    name = model_name(name)
    if command not in COMMANDS:
        raise NotFound(f"no rollout command {command!r}; commands: {', '.join(COMMANDS)}")
    data = request.data()
    expected = _expected(data)
    now = rollouts.get(request.registry, name)
    if (now.id, now.state, now.step) != expected:
        raise Conflict(
            f"rollout #{now.id} of {name} moved meanwhile: it is {describe(now)} now "
            f"(the page showed rollout #{expected[0]} in {expected[1]}, step {expected[2] + 1});"
            " nothing was done, reload to act on the current state"
        )
    kwargs = {}
    reason = str(data.get("reason") or "").strip()[:200]
    if reason and command in ("pause", "abort"):
        kwargs["reason"] = reason
    done = getattr(rollouts, command)(request.registry, name, **kwargs)
    return json_reply({
        "message": f"rollout #{done.id} of {name}: {describe(done)}",
        "rollout": done.to_dict(),
    })  # fmt: skip


def _expected(data: dict[str, Any]) -> tuple[int, str, int]:
    raw = data.get("expected")
    if isinstance(raw, str):  # a form field: "id:state:step"
        parts = raw.split(":")
        raw = dict(zip(("id", "state", "step"), parts, strict=False)) if len(parts) == 3 else None
    if not isinstance(raw, dict):
        raise InvalidInput('send \'expected\': {"id", "state", "step"} of the rollout shown')
    try:
        return int(raw["id"]), str(raw["state"]), int(raw["step"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("'expected' needs the rollout's id, state and step") from None


def view_list(request: Request) -> Reply:
    found = request.registry.rollouts.list()
    rows = [
        (
            link(_url(r.name), r.name),
            h(f"#{r.id}"),
            f'<span class="state {_css(r.state)}">{h(describe(r))}</span>',
            link(model_url(r.name, "versions", r.stable), r.stable),
            link(model_url(r.name, "versions", r.candidate), r.candidate),
            h(r.alias),
            when(r.updated_at),
        )
        for r in found[:SHOWN]
    ]
    body = table(
        ["Model", "Rollout", "State", "Stable", "Candidate", "Alias", "Last change"],
        rows,
        "Rollouts, the newest first",
        empty="No rollout yet: modelport rollout start MODEL --candidate MODEL@staging",
    )
    return request.page("Rollouts", body)


def _css(state: str) -> str:
    return {"promoted": "ok", "paused": "warn", "shadow": "warn", "canary": "warn"}.get(
        state, "bad"
    )


def _steps(r: Rollout) -> str:
    plan = Plan.from_dict(r.plan)
    rows = []
    for i, step in enumerate(plan.steps):
        if r.active and i == r.step:
            mark = "current" + (" (paused)" if r.state == "paused" else "")
        else:
            mark = "done" if i < r.step or r.state == "promoted" else ""
        rows.append((h(i + 1), h(plan.describe(i)), h(f"{step.bake:g} s"), h(step.min_samples),
                     h(mark)))  # fmt: skip
    return table(["Step", "What", "Bake", "Min samples", ""], rows, f"Plan: {plan.text}")


def _gates(status: dict[str, Any]) -> str:
    rows = [
        (
            h(g["gate"]),
            h("—" if g["value"] is None else f"{g['value']:.4g}"),
            h(f"{g['threshold']:g}"),
            h(g["samples"]),
            {True: "pass", False: '<strong class="bad">breach</strong>', None: "too few"}[g["ok"]],
        )
        for g in status["gates"]
    ]
    req = status["requests"]
    note = (
        f"requests on the last windows: stable {req['stable']}, candidate {req['candidate']}, "
        f"shadow {req['shadow']} (dropped {status['shadow_dropped']}); replicas "
        f"{len(status['replicas'])}; controller {status['leader'] or 'none'}"
    )
    return table(
        ["Gate", "Value", "Threshold", "Samples", "Verdict"], rows, "Gates on the last windows"
    ) + (f'<p class="muted">{h(note)}</p>')


def _actions(request: Request, r: Rollout) -> str:
    if not r.active:
        return ""
    if not request.user.can_act:
        return '<p class="muted">Read-only: steering a rollout needs the admin role.</p>'
    api = "/ui/api" + _url(r.name)[3:]
    forms = []
    for command in COMMANDS:
        try:
            operate(r.state, command)
        except Conflict:
            continue
        css = "danger" if command == "abort" else ("" if command == "promote" else "secondary")
        forms.append(
            f'<form class="inline" method="post" action="{h(api)}/{command}" data-action '
            f'data-confirm="{LABELS[command]} rollout #{r.id} of {h(r.name)} (now '
            f'{h(describe(r))})?">'
            + hidden(request, next=_url(r.name), expected=f"{r.id}:{r.state}:{r.step}")
            + f'<button type="submit" class="{css}" data-command="{command}">'
            f"{LABELS[command]}</button></form>"
        )
    return '<h2 id="actions">Actions</h2><div class="actions">' + "".join(forms) + "</div>"


def _decisions(found: list) -> str:
    rows = []
    for r, log in found[:5]:
        for d in reversed(log):
            evidence = orjson.dumps(d.evidence, default=str, option=orjson.OPT_INDENT_2).decode()
            rows.append((
                h(f"#{r.id}"), when(d.at), h(d.action), h(f"{d.from_state} → {d.to_state}"),
                h(d.actor),
                f"<details><summary>{h(_gist(d.evidence))}</summary><pre>{h(evidence)}</pre>"
                "</details>",
            ))  # fmt: skip
    return table(["Rollout", "When", "Decision", "State", "By", "Evidence"], rows,
                 "Decision log, the newest first")  # fmt: skip


def _gist(evidence: dict[str, Any]) -> str:
    """One line of a decision's evidence: its reason, the gates it breached, or the checks of
    the start (the whole evidence is under it)."""
    if evidence.get("reason"):
        return str(evidence["reason"])[:100]
    failed = [g.get("gate") for g in evidence.get("gates", []) if g.get("ok") is False]
    if failed:
        return "breached: " + ", ".join(map(str, failed))
    if "warm_ms" in evidence:
        signature = (evidence.get("signature") or {}).get("signature", "")
        return f"checked: signature {signature}, warm load" + (
            ", golden set" if "golden" in evidence else ""
        )
    return "evidence"


def view_one(request: Request, name: str) -> Reply:
    name = model_name(name)
    try:
        found = rollouts.history(request.registry, name)
    except NotFound:
        browse.aliases(request.registry, name)  # NotFound for a model that does not exist
        body = (
            f'<p class="empty">{link(model_url(name), name)} has had no rollout yet: '
            f"<code>modelport rollout start {h(name)} --candidate {h(name)}@staging</code>.</p>"
        )
        return request.page(f"Rollout of {name}", body)
    status = rollouts.status(request.registry, name)
    r = rollouts.get(request.registry, name)
    head = (
        f"<p>Rollout <strong>#{r.id}</strong> of {link(model_url(name), name)}: "
        f"version {link(model_url(name, 'versions', r.stable), r.stable)} → "
        f"{link(model_url(name, 'versions', r.candidate), r.candidate)} on alias "
        f'<code>{h(r.alias)}</code>, <span class="state {_css(r.state)}" id="rollout-state">'
        f"{h(describe(r))}</span>"
        + (f" — {h(r.reason)}" if r.reason else "")
        + f"; started {when(r.created_at)} by {h(r.created_by)}.</p>"
    )
    live = (
        '<p id="stale" class="banner" role="alert" hidden></p>'
        f'<div id="live" data-url="/ui/api{_url(name)[3:]}" data-id="{r.id}" '
        f'data-state="{h(r.state)}" data-step="{r.step}"></div>'
    )
    body = (
        live
        + head
        + _actions(request, r)
        + '<h2 id="steps">Steps</h2>'
        + _steps(r)
        + '<h2 id="gates">Gates</h2>'
        + _gates(status)
        + '<h2 id="decisions">Decision log</h2>'
        + _decisions(found)
    )
    return request.page(f"Rollout of {name}", body, scripts=("rollout.js",))


PAGE = Page(
    "rollouts",
    routes=(
        Route("GET", "rollouts", view_list),
        Route("GET", "rollouts/{}", view_one),
        Route("GET", "api/rollouts", api_list),
        Route("GET", "api/rollouts/{}", api_one),
        Route("POST", "api/rollouts/{}/{}", act),
    ),
    nav=Nav("Rollouts", "rollouts"),
)
