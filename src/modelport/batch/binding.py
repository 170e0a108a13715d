"""Which columns feed which model input: planned once per job, before any row is read.

    bindings, id_column = bind(signature, info, columns=["pixel_0", ...], id_column="id")

Three ways to bind: an NPY array feeds a single-input model directly; a single 2-D input takes
all (or the listed) numeric columns as its feature vector; otherwise each input is the column of
its name, or the column named by ``--columns input=column``. A list column feeds a vector input.
"""

from __future__ import annotations

from modelport.batch.features import Binding
from modelport.batch.sources import FileInfo
from modelport.errors import InvalidInput
from modelport.signature import Signature, TensorSpec


def bind(signature: Signature, info: FileInfo, columns: list[str] | None = None,
         id_column: str | None = None) -> tuple[tuple[Binding, ...], str | None]:  # fmt: skip
    """Which columns feed each model input (and the id column kept), or InvalidInput naming
    what does not fit."""
    columns = [c.strip() for c in columns or [] if c.strip()]
    if info.format in ("npy", "memory-array"):
        return _plan_array(signature, info, columns, id_column), None
    available = info.columns
    if id_column is not None and id_column not in available:
        raise _unknown([id_column], available, "--id-column")
    pairs = [c for c in columns if "=" in c]
    plain = [c for c in columns if "=" not in c]
    if pairs and plain:
        raise InvalidInput("--columns takes either INPUT=COLUMN pairs or feature column names")
    if pairs:
        bindings = _plan_pairs(signature, pairs, available)
    elif plain or (len(signature.inputs) == 1 and signature.inputs[0].name not in available):
        bindings = (_plan_vector(signature, plain, available, id_column),)
    else:
        missing = [n for n in signature.input_names if n not in available]
        if missing:
            raise InvalidInput(
                f"the model's input(s) {missing} are not columns of {info.file}; "
                f"columns: {_names(available)}; map them with --columns INPUT=COLUMN"
            )
        bindings = tuple(_bind(s, s.name, available[s.name]) for s in signature.inputs)
    return bindings, id_column


def _plan_array(signature: Signature, info: FileInfo, columns: list[str],
                id_column: str | None) -> tuple[Binding, ...]:  # fmt: skip
    if columns or id_column:
        raise InvalidInput("--columns and --id-column need a table input (CSV, Parquet, JSONL)")
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"an array feeds a single-input model; this model takes {signature.input_names}"
        )
    spec = signature.inputs[0]
    inner = tuple(info.shape[1:])
    wanted = spec.shape[1:]
    if len(inner) != len(wanted) or any(
        w >= 0 and w != g for g, w in zip(inner, wanted, strict=True)
    ):
        raise InvalidInput(
            f"{info.file} holds rows of shape {list(inner)}; the model's input "
            f"{spec.describe()} takes rows of shape {[d if d >= 0 else '?' for d in wanted]}"
        )
    return (Binding(spec.name, "array"),)


def _plan_pairs(signature: Signature, pairs: list[str],
                available: dict[str, str]) -> tuple[Binding, ...]:  # fmt: skip
    chosen: dict[str, str] = {}
    for pair in pairs:
        name, _, column = (p.strip() for p in pair.partition("="))
        signature.input(name)  # raises for an unknown input
        if column not in available:
            raise _unknown([column], available, "--columns")
        chosen[name] = column
    for spec in signature.inputs:
        if spec.name not in chosen and spec.name in available:
            chosen[spec.name] = spec.name
    missing = [n for n in signature.input_names if n not in chosen]
    if missing:
        raise InvalidInput(f"no column feeds the model's input(s) {missing}; add INPUT=COLUMN")
    return tuple(_bind(s, chosen[s.name], available[chosen[s.name]]) for s in signature.inputs)


def _plan_vector(signature: Signature, plain: list[str], available: dict[str, str],
                 id_column: str | None) -> Binding:  # fmt: skip
    spec = signature.inputs[0]
    if len(signature.inputs) != 1 or len(spec.shape) != 2:
        raise InvalidInput(
            f"feature columns feed a model with one 2-D input; this model takes "
            f"{signature.describe()}; map inputs with --columns INPUT=COLUMN"
        )
    unknown = [c for c in plain if c not in available]
    if unknown:
        raise _unknown(unknown, available, "--columns")
    features = plain or [c for c, k in available.items() if k == "number" and c != id_column]
    if not features:
        raise InvalidInput(f"the input has no numeric columns; columns: {_names(available)}")
    width = spec.shape[1]
    if width >= 0 and len(features) != width:
        raise InvalidInput(
            f"the model's input {spec.describe()} takes {width} features; "
            f"{len(features)} {'listed' if plain else 'numeric'} column(s) found"
            + ("" if plain else "; choose them with --columns")
        )
    return Binding(spec.name, "vector", tuple(features))


def _bind(spec: TensorSpec, column: str, kind: str) -> Binding:
    if kind == "list" or (kind == "string" and len(spec.shape) > 1):
        if any(d < 0 for d in spec.shape[1:]):
            raise InvalidInput(f"input {spec.describe()} has free inner dimensions; batch needs "
                               "them fixed")  # fmt: skip
        return Binding(spec.name, "list", (column,))
    if kind in ("number", "string") and (
        len(spec.shape) == 1 or (len(spec.shape) == 2 and spec.shape[1] == 1)
    ):
        return Binding(spec.name, "scalar", (column,))
    if kind in ("number", "string"):
        raise InvalidInput(f"column {column!r} holds one number per row; input {spec.describe()} "
                           "needs a list column or feature columns")  # fmt: skip
    raise InvalidInput(f"column {column!r} does not hold numbers or lists of numbers")


def _names(available: dict[str, str]) -> str:
    names = list(available)
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def _unknown(columns: list[str], available: dict[str, str], option: str) -> InvalidInput:
    return InvalidInput(f"unknown column(s) {columns} in {option}; columns: {_names(available)}")
