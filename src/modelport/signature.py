"""Tensor specs and model signatures: ordered named inputs and outputs, ``-1`` for a free dim."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InvalidInput

DTYPES = (
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64", "bfloat16", "string",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InvalidInput(f"unknown dtype {self.dtype!r} for tensor {self.name!r}")
        shape = tuple(-1 if d is None or int(d) < 0 else int(d) for d in self.shape)
        object.__setattr__(self, "shape", shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]))

    def describe(self) -> str:
        dims = ",".join("?" if d < 0 else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"

    def coerce(self, value: Any) -> np.ndarray:
        """Check ``value`` against this spec and return it as an array of the spec's dtype."""
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"input {self.name!r} is not a rectangular array: {exc}") from None
        if self.dtype == "string":
            if array.dtype.kind not in "OUS":
                raise InvalidInput(f"input {self.name!r} must hold strings, got {array.dtype}")
            array = array.astype(object)
        elif array.dtype != self.numpy_dtype:
            if array.dtype.kind in "OUSV" or not np.can_cast(
                array.dtype, self.numpy_dtype, casting="same_kind"
            ):
                raise InvalidInput(
                    f"input {self.name!r} has dtype {array.dtype}, the model expects {self.dtype}"
                )
            array = cast(self.name, array, self.numpy_dtype)
        if array.ndim != len(self.shape):
            raise InvalidInput(
                f"input {self.name!r} has shape {list(array.shape)}, the model expects "
                f"{len(self.shape)} dimensions ({self.describe()})"
            )
        for axis, (got, want) in enumerate(zip(array.shape, self.shape, strict=True)):
            if want >= 0 and got != want:
                raise InvalidInput(
                    f"input {self.name!r} has shape {list(array.shape)}: dimension {axis} "
                    f"is {got}, the model expects {want} ({self.describe()}){self._layout(array)}"
                )
        if self.shape and self.shape[0] < 0 and array.shape[0] == 0:
            raise InvalidInput(f"input {self.name!r} has no rows (shape {list(array.shape)}); "
                               "send at least one")  # fmt: skip
        return array

    def _layout(self, array: np.ndarray) -> str:
        """A hint when a 4-D image input has its channels on the other side."""
        if len(self.shape) != 4:
            return ""
        n, c, h, w = self.shape
        moves = (((h, w, c), "NHWC (channels last)", "NCHW", "(0, 3, 1, 2)"),
                 ((w, c, h), "NCHW (channels first)", "NHWC", "(0, 2, 3, 1)"))  # fmt: skip
        for wanted, looks, takes, axes in moves:
            if all(want < 0 or got == want for got, want in zip(array.shape[1:], wanted,
                                                                 strict=True)):  # fmt: skip
                return (f"; the input looks {looks} but the model takes {takes}: "
                        f"x.transpose{axes}")  # fmt: skip
        return ""


def cast(name: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as ``dtype``; a finite float too large for a narrower float type is refused,
    not turned into infinity."""
    source = array.dtype
    if (
        dtype.kind != "f"
        or source.kind not in "iuf"
        or (source.kind == "f" and dtype.itemsize >= source.itemsize)
    ):
        return array.astype(dtype)
    with np.errstate(over="ignore"):
        out = array.astype(dtype)
    if out.size and not np.isfinite(out).all() and (np.isinf(out) & np.isfinite(array)).any():
        raise out_of_range(name, dtype)
    return out


def out_of_range(name: str, dtype: np.dtype) -> InvalidInput:
    """The one message for a finite number too large for a float type, on every path."""
    return InvalidInput(
        f"input {name!r} has values outside the range of {dtype.name} "
        f"(largest {float(np.finfo(dtype).max):.4g})"
    )


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(d) for d in data.get("inputs", ())),
            tuple(TensorSpec.from_dict(d) for d in data.get("outputs", ())),
        )

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidInput(f"the model has no input {name!r}; inputs: {self.input_names}")

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def coerce_inputs(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validate a name -> array mapping against the inputs; return arrays of the right dtype."""
        self.check_names(inputs)
        return {spec.name: spec.coerce(inputs[spec.name]) for spec in self.inputs}

    def check_names(self, inputs: Mapping[str, Any]) -> None:
        """Raise InvalidInput unless ``inputs`` names exactly the signature's inputs."""
        if not isinstance(inputs, Mapping):
            raise InvalidInput("inputs must be a mapping of input name to array")
        names = self.input_names
        if len(inputs) == len(names) and all(name in inputs for name in names):
            return
        unknown = [name for name in inputs if name not in names]
        if unknown:
            raise InvalidInput(f"unknown input(s) {unknown}; the model takes {names}")
        missing = [name for name in names if name not in inputs]
        raise InvalidInput(f"missing input(s) {missing}; send exactly the inputs {names}")

    def describe(self) -> str:
        ins = ", ".join(spec.describe() for spec in self.inputs)
        outs = ", ".join(spec.describe() for spec in self.outputs)
        return f"({ins}) -> ({outs})"


def as_input_dict(signature: Signature, data: Any) -> Mapping[str, Any]:
    """Accept a bare array for a single-input model, or a mapping of names to arrays."""
    if isinstance(data, Mapping):
        return data
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"the model takes {len(signature.inputs)} inputs {signature.input_names}; "
            "pass a mapping of input name to array"
        )
    return {signature.inputs[0].name: data}
