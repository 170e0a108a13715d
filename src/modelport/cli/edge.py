"""Edge commands: bundle, keys generate|list|rotate, fleet serve|token|release|devices|deploy|
status|halt|resume|rollback, edge agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelport.cli import common
from modelport.cli.common import console, human_size, print_json, registry

keys_app = typer.Typer(
    help="Release signing keys (Ed25519) and their TUF root.", no_args_is_help=True
)
fleet_app = typer.Typer(
    help="The fleet server and its devices, releases and deployments.", no_args_is_help=True
)
edge_app = typer.Typer(help="Run on a device.", no_args_is_help=True)
KeysDir = Annotated[Path | None, typer.Option("--keys", help="Key store (default HOME/keys).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _store(keys: Path | None):
    from modelport.edge.keys import KeyStore

    return KeyStore(keys or common.state.settings.home / "keys")


def _fleet():
    from modelport.edge.fleet.store import Fleet

    return Fleet(registry())


def _golden(path: Path | None):
    if path is None:
        return None
    import numpy as np

    from modelport.errors import InvalidInput

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read golden inputs from {path}: {exc}") from None


def bundle(
    ref: Annotated[str, typer.Argument(help="The version to ship, e.g. digits@production.")],
    target: Annotated[str, typer.Option(help="onnx, tflite or openvino.")] = "onnx",
    precision: Annotated[
        str, typer.Option(help="fp32, fp16 or int8 (converted targets).")
    ] = "fp32",
    key: Annotated[
        str | None, typer.Option(help="Key id (prefix); default the active key.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle file to write.")] = Path(
        "model.bundle"
    ),
    golden: Annotated[
        Path | None,
        typer.Option(
            help=".npz of golden inputs (default: the version's stored evaluation "
            "set, else drawn from the signature)."
        ),
    ] = None,
    hardware: Annotated[list[str] | None, typer.Option(help="Hardware class it is for.")] = None,
    keys: KeysDir = None,
) -> None:
    """Pack a version, its golden requests and runtime needs into a signed bundle."""
    from modelport.edge.bundle import pack_ref

    info = pack_ref(
        registry(),
        ref,
        target,
        store=_store(keys),
        output=output,
        keyid=key,
        precision=precision,
        golden=_golden(golden),
        hardware=hardware or (),
    )
    console.print(
        f"bundled [bold]{info.manifest['model']}[/] ({target} {precision}) as release "
        f"{info.release} -> {output}  {len(info.files)} files  {human_size(info.size)}  "
        f"key {info.keyid[:12]}"
    )


@keys_app.command("generate")
def keys_generate(keys: KeysDir = None) -> None:
    """Make the first signing key and root version 1."""
    key = _store(keys).generate()
    console.print(f"generated key {key.keyid[:12]} (root version 1)")


@keys_app.command("rotate")
def keys_rotate(keys: KeysDir = None) -> None:
    """Replace the active key; the next root (signed by both) revokes the old one."""
    store = _store(keys)
    key = store.rotate()
    console.print(
        f"rotated: key {key.keyid[:12]} is active (root version {len(store.root_versions())})"
    )


@keys_app.command("list")
def keys_list(keys: KeysDir = None, json_out: JsonFlag = False) -> None:
    """The keys of the store, active and revoked."""
    store = _store(keys)
    if json_out:
        print_json([k.to_dict() for k in store.keys()])
        return
    table = Table("key id", "created", "status")
    for key in store.keys():
        table.add_row(key.keyid[:16], key.created, key.status)
    console.print(table)
    console.print(f"root version {len(store.root_versions())}")
