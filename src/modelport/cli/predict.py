"""``modelport predict REF --input FILE``: run one version on a file of inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelport.cli.common import console, print_json, registry

if TYPE_CHECKING:
    import numpy as np

    from modelport.signature import Signature


def read_inputs(path: Path, signature: Signature) -> dict[str, Any]:
    """Inputs from .npy, .npz, .json or .csv, as a name -> array mapping."""
    from modelport.datafiles import read_numbers
    from modelport.errors import InvalidInput
    from modelport.signature import as_input_dict

    if not path.is_file():
        raise InvalidInput(f"input file {path} does not exist")
    data = read_numbers(path, (".npy", ".npz", ".json", ".csv"))
    if isinstance(data, dict) and "inputs" in data and isinstance(data["inputs"], dict):
        data = data["inputs"]
    if isinstance(data, list) and len(signature.inputs) == 1:
        spec = signature.inputs[0]
        if len(spec.shape) >= 2 and data and not isinstance(data[0], list):
            data = [data]  # one sample given without its batch dimension
    return dict(as_input_dict(signature, data))


def write_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    import numpy as np

    from modelport.errors import InvalidInput

    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(outputs) != 1:
            raise InvalidInput("the model has several outputs; write them to .npz or .json")
        np.save(path, next(iter(outputs.values())))
    elif suffix == ".npz":
        np.savez(path, **outputs)
    elif suffix == ".json":
        path.write_text(json.dumps({k: v.tolist() for k, v in outputs.items()}))
    elif suffix == ".csv":
        columns: list[tuple[str, np.ndarray]] = []
        for key, value in outputs.items():
            flat = value.reshape(value.shape[0], -1) if value.ndim > 1 else value[:, None]
            names = [key] if flat.shape[1] == 1 else [f"{key}_{i}" for i in range(flat.shape[1])]
            columns.extend((n, flat[:, i]) for i, n in enumerate(names))
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([n for n, _ in columns])
            for row in zip(*(col for _, col in columns), strict=True):
                writer.writerow([x.item() if hasattr(x, "item") else x for x in row])
    else:
        raise InvalidInput(f"cannot write {path.name}: use .npy, .npz, .json or .csv")


def predict(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias.")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".npy, .npz, .json or .csv")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write predictions here.")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Runtime to use (default: by format).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run a registered model on a file of inputs; print or write its outputs."""
    from modelport.api import load

    reg = registry()
    version = reg.resolve(ref)
    inputs = read_inputs(input, version.signature)
    runtime = load(version, registry=reg, backend=backend)
    try:
        outputs = runtime.predict(inputs)
    finally:
        runtime.close()
    if output is not None:
        write_outputs(output, outputs)
        console.print(f"wrote {len(outputs)} output(s) of {version.ref} to {output}")
        return
    if json_out:
        print_json({"model": version.ref, "outputs": outputs})
        return
    console.print(f"{version.ref} on {input.name}:")
    table = Table("row", *outputs.keys())
    n_rows = min(len(v) for v in outputs.values()) if outputs else 0
    for row in range(n_rows):
        table.add_row(str(row), *(_cell(v[row]) for v in outputs.values()))
    console.print(table)


def _cell(value: Any) -> str:
    import numpy as np

    array = np.asarray(value)
    if array.ndim == 1 and array.dtype.kind == "f" and array.size > 1:
        best = int(array.argmax())
        return f"argmax {best} ({array[best]:.3f})"
    if array.ndim == 0:
        return str(array.item())
    text = np.array2string(array, precision=3, threshold=8)
    return text
