"""Rollout commands: start, status, pause, resume, promote, abort, history, timeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelport.cli.common import console, print_json, registry, when

if TYPE_CHECKING:
    from modelport.registry.rollouts import Rollout

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Name = Annotated[str, typer.Argument(help="Model name.")]
rollout_app = typer.Typer(
    help="Roll a candidate out: shadow, sticky canaries, gates, automatic rollback.",
    no_args_is_help=True,
)


@rollout_app.command("start")
def start(
    name: Name,
    candidate: Annotated[str, typer.Option(help="The candidate: digits@staging or digits:4.")],
    plan: Annotated[
        str, typer.Option(help="Steps, e.g. 'shadow 20% 60s; canary 5,25,50,100 60s'.")
    ] = "shadow 20% 60s; canary 5,25,50,100 60s",
    alias: Annotated[
        str, typer.Option(help="The serving alias the candidate may take.")
    ] = "production",
    max_error_rate: Annotated[
        float, typer.Option(help="Candidate error rate that breaches.")
    ] = 0.01,
    max_p99_ratio: Annotated[
        float, typer.Option(help="Candidate p99 / stable p99 that breaches.")
    ] = 1.5,
    min_agreement: Annotated[
        float, typer.Option(help="Shadow agreement under which it breaches.")
    ] = 0.98,
    max_shift: Annotated[
        float, typer.Option(help="Output distribution distance that breaches.")
    ] = 0.3,
    window: Annotated[float, typer.Option(help="Seconds per gate window.")] = 1.0,
    span: Annotated[int, typer.Option(help="Windows per rolling evaluation.")] = 5,
    consecutive: Annotated[
        int, typer.Option(help="Breached evaluations in a row that roll back.")
    ] = 3,
    min_window_samples: Annotated[int, typer.Option(help="Samples a gate needs in a window.")] = 20,
    bake: Annotated[float, typer.Option(help="Default bake time of a step, seconds.")] = 60.0,
    min_samples: Annotated[int, typer.Option(help="Default candidate samples per step.")] = 100,
    golden: Annotated[
        Path | None,
        typer.Option(
            help="An .npz golden set both versions answer first (default: the "
            "evaluation set stored with the candidate or stable)."
        ),
    ] = None,
    max_memory_mb: Annotated[
        float | None, typer.Option(help="Most memory the loaded, warm candidate may add.")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Check the candidate (signature, warm load, memory, golden set) and start rolling it out."""
    from modelport import rollouts
    from modelport.rollouts.gates import Gates

    gates = Gates(max_error_rate=max_error_rate, max_p99_ratio=max_p99_ratio,
                  min_agreement=min_agreement, max_shift=max_shift, window=window, span=span,
                  consecutive=consecutive, min_window_samples=min_window_samples)  # fmt: skip
    rollout = rollouts.start(registry(), name, candidate, plan=plan, gates=gates, alias=alias,
                             golden=golden, bake=bake, min_samples=min_samples,
                             memory_budget_mb=max_memory_mb)  # fmt: skip
    if json_out:
        print_json(rollout.to_dict())
        return
    evidence = registry().rollouts.decisions(rollout.id)[0].evidence
    warm = evidence["warm_ms"]
    console.print(f"signature compatible: {evidence['signature']['signature']}")
    console.print(f"warm load: stable {warm['stable']:.2f} ms, candidate {warm['candidate']:.2f} "
                  f"ms, adding {evidence.get('memory_mb', 0):.2f} MiB")  # fmt: skip
    if "golden" in evidence:
        g = evidence["golden"]
        accuracy = g.get("accuracy")
        scored = f", accuracy {accuracy['candidate']:.4f} (stable {accuracy['stable']:.4f})" \
            if accuracy else ""  # fmt: skip
        console.print(f"golden set ({g['source']}): {g['rows']} rows, agreement "
                      f"{g['agreement']:.4f}{scored}, "
                      f"latency {g['latency_ratio']:.2f}x stable's")  # fmt: skip
    console.print(f"rollout #{rollout.id} of {name}: {rollout.stable} -> {rollout.candidate}, "
                  f"{_step(rollout)}; serving replicas follow it from the catalogue")  # fmt: skip


def _step(rollout: Rollout) -> str:
    from modelport.rollouts.api import describe

    return describe(rollout)


@rollout_app.command("status")
def status(
    name: Name,
    watch: Annotated[
        bool, typer.Option("--watch", help="Redraw every second until it ends.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """The rollout's step and its gates on the last windows (a live table with --watch)."""
    from modelport import rollouts

    if json_out:
        print_json(rollouts.status(registry(), name))
        return
    if not watch:
        console.print(_status_table(rollouts.status(registry(), name)))
        return
    from rich.live import Live

    with Live(console=console, refresh_per_second=2) as live:
        while True:
            state = rollouts.status(registry(), name)
            live.update(_status_table(state))
            if state["rollout"]["state"] not in ("shadow", "canary", "paused"):
                return
            time.sleep(1.0)


def _status_table(state: dict[str, Any]) -> Table:
    r = state["rollout"]
    table = Table(title=f"{r['name']} rollout #{r['id']}: {r['stable']} -> {r['candidate']}, "
                  f"{state['step']}", title_justify="left")  # fmt: skip
    table.add_column("gate")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("samples", justify="right")
    table.add_column("ok")
    for g in state["gates"]:
        value = "-" if g["value"] is None else f"{g['value']:.4g}"
        ok = {True: "pass", False: "[red]BREACH[/]", None: "too few"}[g["ok"]]
        table.add_row(g["gate"], value, f"{g['threshold']:g}", str(g["samples"]), ok)
    req = state["requests"]
    table.caption = (f"requests: stable {req['stable']}, candidate {req['candidate']}, shadow "
                     f"{req['shadow']} (dropped {state['shadow_dropped']}); replicas "
                     f"{len(state['replicas'])}; leader {state['leader'] or '-'}"
                     + (f"; {r['reason']}" if r["reason"] else ""))  # fmt: skip
    table.caption_justify = "left"
    return table


def _command(verb: str, name: str, **kwargs: Any) -> None:
    from modelport import rollouts

    rollout = getattr(rollouts, verb)(registry(), name, **kwargs)
    console.print(f"rollout #{rollout.id} of {name}: {_step(rollout)}")


@rollout_app.command("pause")
def pause(
    name: Name,
    reason: Annotated[str, typer.Option(help="Why (kept in the log).")] = "paused by an operator",
) -> None:
    """Pause: all traffic goes to stable until resumed."""
    _command("pause", name, reason=reason)


@rollout_app.command("resume")
def resume(name: Name) -> None:
    """Go on from the paused step (its bake time starts again)."""
    _command("resume", name)


@rollout_app.command("promote")
def promote(name: Name) -> None:
    """Move the serving alias to the candidate now."""
    _command("promote", name)


@rollout_app.command("abort")
def abort(
    name: Name,
    reason: Annotated[str, typer.Option(help="Why (kept in the log).")] = "aborted by an operator",
) -> None:
    """End the rollout; stable keeps serving."""
    _command("abort", name, reason=reason)


@rollout_app.command("history")
def history(name: Name, json_out: JsonFlag = False) -> None:
    """Every rollout of NAME with its decision log and evidence."""
    from modelport import rollouts

    found = rollouts.history(registry(), name)
    if json_out:
        print_json([{**r.to_dict(), "decisions": [d.to_dict() for d in log]} for r, log in found])
        return
    for rollout, log in found:
        table = Table("at", "by", "action", "from", "to", "evidence",
                      title=f"rollout #{rollout.id}: {rollout.stable} -> {rollout.candidate}, "
                      f"{_step(rollout)}", title_justify="left")  # fmt: skip
        for d in log:
            table.add_row(when(d.at), d.actor, d.action, d.from_state, d.to_state,
                          _evidence(d.evidence))  # fmt: skip
        console.print(table)


def _evidence(evidence: dict[str, Any]) -> str:
    parts = []
    for g in evidence.get("gates", []):
        if g["value"] is not None:
            mark = " BREACH" if g["ok"] is False else ""
            parts.append(f"{g['gate']}={g['value']:.3g}/{g['threshold']:g} n={g['samples']}{mark}")
    if "window" in evidence:
        end = time.localtime(evidence["window"]["end_ms"] / 1000)
        parts.append(f"window ending {time.strftime('%H:%M:%S', end)}")
    if evidence.get("reason") and evidence["reason"] != "baking":
        parts.append(str(evidence["reason"]))
    if "signature" in evidence:
        parts.append(f"signature ok; warm {evidence['warm_ms']['candidate']:.2f} ms")
    return "; ".join(parts)


@rollout_app.command("timeline")
def timeline(
    name: Name,
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")] = Path(
        "rollout.png"
    ),
    rollout_id: Annotated[
        int | None, typer.Option("--id", help="This rollout, not the latest.")
    ] = None,
) -> None:
    """Draw weights, error rates, latency and agreement per window into a PNG."""
    from modelport.rollouts.timeline import timeline as draw

    console.print(f"wrote {draw(registry(), name, output, rollout_id)}")
