"""The ``modelport`` command. Heavy frameworks load inside commands, never at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport._version import __version__
from modelport.cli import audit as audit_cmd
from modelport.cli import batch as batch_cmd
from modelport.cli import compress as compress_cmds
from modelport.cli import convert as convert_cmds
from modelport.cli import edge as edge_cmds
from modelport.cli import explain as explain_cmd
from modelport.cli import fleet as _fleet_cmds  # noqa: F401  (registers the fleet commands)
from modelport.cli import llm as llm_cmds
from modelport.cli import monitor as monitor_cmds
from modelport.cli import predict as predict_cmd
from modelport.cli import registry as registry_cmds
from modelport.cli import rollout as rollout_cmds
from modelport.cli import serve as serve_cmd
from modelport.cli import ui as ui_cmd
from modelport.cli.common import option_defaults, state

app = typer.Typer(
    name="modelport",
    help="Register, version, compress, convert and serve trained models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelport {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Registry folder (env MODELPORT_HOME, default ~/.modelport)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if home is not None:
        state.overrides["home"] = home
    if ctx.invoked_subcommand in _CONFIGURABLE:  # their options also come from the settings
        name = ctx.invoked_subcommand
        command = ctx.command.get_command(ctx, name)
        ctx.default_map = {name: option_defaults(command, getattr(state.settings, name), name)}


_CONFIGURABLE = ("serve", "batch")


app.command("register")(registry_cmds.register)
app.command("list")(registry_cmds.list_)
app.command("show")(registry_cmds.show)
app.command("history")(registry_cmds.history)
app.command("audit")(audit_cmd.audit)
app.add_typer(registry_cmds.alias_app, name="alias")
app.command("rollback")(registry_cmds.rollback)
app.command("export")(registry_cmds.export)
app.command("delete")(registry_cmds.delete)
app.command("verify")(registry_cmds.verify)
app.command("gc")(registry_cmds.gc)
app.command("eval-set")(registry_cmds.eval_set)
app.command("predict")(predict_cmd.predict)
app.add_typer(compress_cmds.compress_app, name="compress")
app.command("evaluate")(compress_cmds.evaluate)
app.command("serve")(serve_cmd.serve)
app.command("ui")(ui_cmd.ui)
app.command("convert")(convert_cmds.convert)
app.command("runtimes")(convert_cmds.runtimes)
app.command("batch")(batch_cmd.batch)
app.add_typer(rollout_cmds.rollout_app, name="rollout")
app.command("bundle")(edge_cmds.bundle)
app.add_typer(edge_cmds.keys_app, name="keys")
app.add_typer(edge_cmds.fleet_app, name="fleet")
app.add_typer(edge_cmds.edge_app, name="edge")
app.command("generate")(llm_cmds.generate)
app.command("chat")(llm_cmds.chat)
app.command("embed")(llm_cmds.embed)
app.command("explain")(explain_cmd.explain)
app.add_typer(monitor_cmds.monitor_app, name="monitor")


def main() -> None:
    """The full CLI (``modelport.entry.main`` sends a plain ``batch`` command line elsewhere)."""
    from modelport.entry import guarded

    guarded(app)
