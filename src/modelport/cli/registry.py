"""Registry commands: register, list, show, history, alias, rollback, export, delete, verify, gc,
eval-set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelport.cli.common import console, human_size, parse_pairs, print_json, registry, when

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
alias_app = typer.Typer(
    help="Move or remove aliases (production, staging, ...).", no_args_is_help=True
)


def register(
    path: Annotated[Path, typer.Argument(help="An .onnx file, or a folder holding one.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="key=value, repeatable.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable.")] = None,
    description: Annotated[str, typer.Option(help="Free-form description.")] = "",
    parent: Annotated[str | None, typer.Option(help="The version this one came from.")] = None,
    reference_data: Annotated[
        Path | None,
        typer.Option(
            help="Training or evaluation inputs: store reference statistics for drift "
            "(as 'modelport monitor baseline' does).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Register a model file as the next version of NAME."""
    from modelport.api import register as do_register
    from modelport.errors import InvalidInput

    reference = None
    if reference_data is not None:
        from modelport.datafiles import read_numbers

        reference = read_numbers(reference_data)
    metrics = parse_pairs(metric, "metric")
    for key, value in metrics.items():
        try:
            float(value)
        except ValueError:
            raise InvalidInput(f"metric {key!r} must be a number, got {value!r}") from None
    version = do_register(
        path,
        name,
        registry=registry(),
        alias=alias if reference is None else None,  # set once the reference is stored
        metrics={k: float(v) for k, v in metrics.items()},
        tags=parse_pairs(tag, "tag"),
        description=description,
        parent=parent,
        transform="manual" if parent else None,
    )
    if reference is not None:
        version = _with_reference(version, reference, alias)
    if json_out:
        print_json(version.to_dict())
        return
    aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
    console.print(
        f"registered [bold]{version.ref}[/]{aliases}  {version.format}  "
        f"{human_size(version.size)}  sha256:{version.sha256[:12]}"
    )


def _with_reference(version: Any, data: Any, alias: str | None) -> Any:
    """Store reference statistics on a new version (then point ``alias`` at it); a version the
    data does not match is removed again."""
    from modelport.errors import InvalidInput
    from modelport.monitoring.reference import baseline

    try:
        version = baseline(registry(), version.ref, data)
    except InvalidInput:
        registry().delete(version.ref)
        raise
    return registry().set_alias(version.name, alias, version.version) if alias else version


def list_(
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """List models, or the versions of one model."""
    reg = registry()
    if name is None:
        models = reg.list_models()
        if json_out:
            print_json([m.to_dict() for m in models])
            return
        table = Table("model", "versions", "latest", "aliases", "updated")
        for m in models:
            aliases = ", ".join(f"{a}->{v}" for a, v in m.aliases.items())
            table.add_row(
                m.name, str(m.versions), str(m.latest or "-"), aliases, when(m.updated_at)
            )
        console.print(table)
        return
    versions = reg.list_versions(name)
    if json_out:
        print_json([v.to_dict() for v in versions])
        return
    table = Table("version", "format", "size", "aliases", "metrics", "parent", "created", "by",
                  caption=_size_caption(versions))  # fmt: skip
    for v in versions:
        metrics = ", ".join(f"{k}={val:g}" for k, val in v.metrics.items())
        lineage = f"{v.parent} ({v.transform})" if v.parent else ""
        table.add_row(
            str(v.version), v.format, _size(v), ", ".join(v.aliases), metrics,
            lineage, when(v.created_at), v.created_by,
        )  # fmt: skip
    console.print(table)


def _size(version: Any) -> str:
    """What a runtime loads, and the kept SavedModel copy apart: ``8.5 MiB (+19.0 MiB kept)``."""
    from modelport.importers.keras import kept_copy_size

    kept = kept_copy_size(version.files)
    text = human_size(version.size - kept)
    return f"{text} (+{human_size(kept)} kept)" if kept else text


def _size_caption(versions: Any) -> str | None:
    from modelport.importers.keras import kept_copy_size

    if any(kept_copy_size(v.files) for v in versions):
        return "size: the files a runtime loads; kept: the SavedModel copy for TFLite conversion"
    return None


def show(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias.")],
    json_out: JsonFlag = False,
) -> None:
    """Show one version: files, signature, metrics, tags and lineage."""
    reg = registry()
    version = reg.get(ref)
    if json_out:
        data = version.to_dict()
        data["lineage"] = [v.ref for v in reg.lineage(version.ref)]
        print_json(data)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", version.ref)
    table.add_row("aliases", ", ".join(version.aliases) or "-")
    table.add_row("format", version.format)
    table.add_row("sha256", version.sha256)
    table.add_row("size", f"{human_size(version.size)} ({version.size} bytes)")
    for spec in version.signature.inputs:
        table.add_row("input", spec.describe())
    for spec in version.signature.outputs:
        table.add_row("output", spec.describe())
    for key, value in version.metrics.items():
        table.add_row("metric", f"{key} = {value:g}")
    card = _card(version.tags)
    for key, value in card.items():
        table.add_row(key, value)
    for key, value in version.tags.items():
        if key not in CARD:
            table.add_row("tag", f"{key} = {value}")
    if version.description:
        table.add_row("description", version.description)
    if version.parent:
        chain = " <- ".join(v.ref for v in reg.lineage(version.ref))
        params = f" {version.transform_params}" if version.transform_params else ""
        table.add_row("lineage", f"{chain}  via {version.transform}{params}")
    table.add_row("created", f"{when(version.created_at)} by {version.created_by}")
    if len(version.files) > 1:
        for entry in version.files:
            table.add_row("file", f"{entry.path}  {human_size(entry.size)}  {entry.sha256[:12]}")
    console.print(table)


CARD = {"task": "task", "architecture": "architecture", "parameters": "parameters",
        "context_length": "context", "vocab_size": "vocab", "quantization": "quantization",
        "chat_template": "chat template"}  # fmt: skip


def _card(tags: dict[str, str]) -> dict[str, str]:
    """A language model's facts, as the importer read them from its files."""
    if "task" not in tags:
        return {}
    card = {label: tags[key] for key, label in CARD.items() if key in tags}
    if card.get("parameters", "").isdigit():
        n = int(card["parameters"])
        card["parameters"] = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M ({n})"
    return card


def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str | None, typer.Option(help="Only this alias's moves.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Who registered, moved, rolled back or deleted what, and when."""
    events = registry().history(name, alias)
    if json_out:
        print_json([e.to_dict() for e in events])
        return
    table = Table("when", "who", "what")
    for e in events:
        if e.action == "register":
            what = f"registered version {e.version}"
        elif e.action == "delete":
            what = f"deleted version {e.version}"
        elif e.action == "alias_remove":
            what = f"removed alias {e.alias} (was {e.from_version})"
        else:
            verb = "rolled back" if e.action == "rollback" else "moved"
            if e.from_version is None:
                what = f"set alias {e.alias} -> {e.version}"
            else:
                what = f"{verb} alias {e.alias}: {e.from_version} -> {e.version}"
        table.add_row(when(e.at), e.actor, what)
    console.print(table)


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
) -> None:
    """Point ALIAS of NAME at VERSION."""
    target = registry().set_alias(name, alias, version)
    console.print(f"{name}@{alias} -> {target.version}")


@alias_app.command("remove")
def alias_remove(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
) -> None:
    """Remove ALIAS from NAME."""
    registry().remove_alias(name, alias)
    console.print(f"removed {name}@{alias}")


def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to move back.")],
) -> None:
    """Move ALIAS back to where it pointed before its last move."""
    target = registry().rollback(name, alias)
    console.print(f"{name}@{alias} -> {target.version} (rolled back)")


def export(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias.")],
    dest: Annotated[Path, typer.Argument(help="File or folder to write.")],
) -> None:
    """Copy a version's artifact out of the registry (checked against its sha256).

    A path with a suffix names one file: a version of several files writes its model file there
    when the suffix matches and nothing else is needed to run it (a Keras version's kept
    SavedModel copy is left out, and said so); otherwise give a folder."""
    reg = registry()
    version = reg.resolve(ref)
    only, note = _single_file(version, dest)
    written = reg.export(version.ref, dest, only=only)
    console.print(f"exported {ref} to {written}{note}", highlight=False)


def _single_file(version: Any, dest: Path) -> tuple[str | None, str]:
    """The one file of ``version`` that ``dest`` asks for (None: export as usual), and a note."""
    from modelport.errors import InvalidInput
    from modelport.importers.keras import SAVED_MODEL

    if len(version.files) == 1 or not dest.suffix or dest.is_dir():
        return None, ""
    model = Path(version.entrypoint)
    kept = SAVED_MODEL + "/"
    needed = [f.path for f in version.files
              if f.path != version.entrypoint and not f.path.startswith(kept)]  # fmt: skip
    if model.suffix.lower() == dest.suffix.lower() and not needed:
        return version.entrypoint, f" ({model.name} only; export to a folder for every file)"
    single = "" if needed else f", or to a {model.suffix} file for the model alone"
    copy = [kept] if any(f.path.startswith(kept) for f in version.files) else []
    raise InvalidInput(
        f"{version.ref} is {len(version.files)} files ({', '.join([model.name, *needed, *copy])}); "
        f"{dest} names one {dest.suffix} file: export to a folder (a path without a suffix)"
        f"{single}"
    )


def delete(
    ref: Annotated[str, typer.Argument(help="name:VERSION to delete.")],
) -> None:
    """Delete a version (refused while an alias points at it). Run gc to free its blobs."""
    gone = registry().delete(ref)
    console.print(f"deleted {gone.ref}")


def verify(
    ref: Annotated[
        list[str] | None, typer.Argument(help="Versions to check (default all).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Re-hash every stored blob; exit 1 if any is missing or corrupt."""
    reg = registry()
    problems = reg.verify(ref or None)
    if json_out:
        print_json({"ok": not problems, "problems": [p.to_dict() for p in problems]})
    elif problems:
        for p in problems:
            console.print(f"[red]{p.ref}[/] {p.path}: {p.message}")
    else:
        console.print("all blobs intact")
    if problems:
        raise typer.Exit(1)


def gc(
    grace: Annotated[
        float,
        typer.Option(help="Keep unreferenced files younger than this many seconds.", min=0),
    ] = 600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, remove nothing.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Remove blobs that no version references, stale partial writes and unused checkouts."""
    report = registry().gc(grace_seconds=grace, dry_run=dry_run)
    if json_out:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {report.removed_blobs} blob(s) ({human_size(report.freed_bytes)}), "
        f"{report.removed_tmp} partial write(s), {report.removed_checkouts} checkout(s); "
        f"kept {report.kept_blobs} blob(s)"
    )


def eval_set(
    ref: Annotated[str, typer.Argument(help="The version, e.g. digits:3 or digits@staging.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help=".npz of arrays by input name (and 'label'), or one array for a "
            "one-input model (.npy, .csv, .parquet).",
        ),
    ],
    labels: Annotated[Path | None, typer.Option(help="Labels, one per row (.npy, .csv).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Store an evaluation set with a version: rollouts check candidates on it, bundles carry
    its inputs as golden requests."""
    from modelport.registry import evalset

    version = evalset.store(registry(), ref, data, labels)
    arrays = evalset.stored(registry(), version) or {}
    rows = len(next(iter(arrays.values()))) if arrays else 0
    if json_out:
        print_json({"ref": version.ref, "rows": rows, "labels": evalset.LABEL in arrays,
                    "sha256": version.tags[evalset.TAG]})  # fmt: skip
        return
    labelled = "with labels" if evalset.LABEL in arrays else "without labels"
    console.print(f"stored an evaluation set of {rows:,} rows ({labelled}) with {version.ref}",
                  highlight=False)  # fmt: skip
