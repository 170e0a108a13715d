"""``modelport explain``: feature attributions of a registered model, and its background set.

modelport explain background digits:1 --data background.npy     # store the background set
modelport explain digits:1 --input rows.npy --top 5              # attributions, here
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelport.cli.common import console, print_json, registry

if TYPE_CHECKING:
    from modelport.monitoring.explain import Explanation


def explain(
    target: Annotated[str, typer.Argument(
        help="The model to explain (name, name:3, name@alias), or 'background' to store the "
        "background set of REF.", show_default=False)],
    ref: Annotated[str | None, typer.Argument(
        help="With 'background': the model version it belongs to.", show_default=False)] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Rows to explain (.npy, .npz, .json, .csv).")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="With 'background': typical inputs (.npy, .npz, .json, .csv, .parquet).",
    )] = None,
    method: Annotated[str, typer.Option(help="permutation, kernel or exact.")] = "permutation",
    output: Annotated[str | None, typer.Option(
        "--output-name", help="The output to explain (default: the first float one).")] = None,
    top: Annotated[int, typer.Option(help="Features listed per row.", min=1)] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:  # fmt: skip
    """Explain a model's answers on a file of rows (shap attributions against the version's
    background set), or store that background set with 'explain background REF --data FILE'."""
    from modelport.errors import InvalidInput

    if target == "background" and ref is not None:
        if data is None:
            raise InvalidInput("explain background REF needs --data FILE (rows of typical inputs)")
        store_background(ref, data)
        return
    if ref is not None:
        raise InvalidInput(f"unexpected argument {ref!r}: use explain REF --input FILE")
    if input is None:
        raise InvalidInput("explain REF needs --input FILE (the rows to explain)")
    result, version = run(target, input, method, output)
    if json_out:
        print_json({"model": version, **result.to_dict()})
        return
    show(version, result, top)


def store_background(ref: str, data: Path) -> None:
    import numpy as np

    from modelport.datafiles import read_numbers
    from modelport.errors import InvalidInput
    from modelport.monitoring.explain import KIND, check_background
    from modelport.registry.attachments import PREFIX, attach

    reg = registry()
    version = reg.resolve(ref)
    if not data.is_file():
        raise InvalidInput(f"data file {data} does not exist")
    array = check_background(version.signature, version.ref, read_numbers(data))
    with tempfile.TemporaryDirectory(dir=reg.blobs.tmp, prefix="background-") as workdir:
        path = Path(workdir) / "background.npy"
        np.save(path, array, allow_pickle=False)
        version = attach(reg, version.ref, KIND, path)
    digest = version.tags[PREFIX + KIND]
    console.print(f"background set of {version.ref}: {array.shape[0]} rows x {array.shape[1]} "
                  f"features (blob {digest[:12]})", highlight=False)  # fmt: skip


def run(ref: str, input: Path, method: str, output: str | None) -> tuple[Explanation, str]:
    from modelport.api import load
    from modelport.cli.predict import read_inputs
    from modelport.errors import InvalidInput
    from modelport.monitoring.explain import background_of, explain, how_to_add, tabular_input

    reg = registry()
    version = reg.resolve(ref)
    spec = tabular_input(version.signature, version.ref)
    background = background_of(reg, version)
    if background is None:
        raise InvalidInput(how_to_add(version.ref))
    rows = version.signature.coerce_inputs(read_inputs(input, version.signature))[spec.name]
    runtime = load(version, registry=reg)
    try:
        return explain(runtime, rows, background, output, method, version.ref), version.ref
    finally:
        runtime.close()


def show(ref: str, result: Explanation, top: int) -> None:
    """Per row: the output column explained (the argmax of several), f(x), E[f], top features."""
    import numpy as np

    console.print(f"{ref}: {result.method} attributions of {result.output!r}", highlight=False)
    table = Table("row", "column", "f(x)", "E\\[f]", "sum of attributions", f"top {top} features")
    for row in range(result.values.shape[0]):
        values, base, pred = result.values[row], result.base_values[row], result.prediction[row]
        column: Any = ""
        if values.ndim == 2:  # one column per output value: explain the largest
            column = int(np.argmax(pred))
            values, base, pred = values[:, column], base[column], pred[column]
        order = np.argsort(-np.abs(values))[:top]
        features = ", ".join(f"{int(i)}: {values[i]:+.3f}" for i in order)
        table.add_row(str(row), str(column), f"{float(pred):.4f}", f"{float(base):.4f}",
                      f"{float(values.sum()):+.4f}", features)  # fmt: skip
    console.print(table)
