"""PyTorch ``nn.Module`` -> ONNX with a dynamic batch axis."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelport.errors import BackendError, InvalidInput, MissingDependency
from modelport.importers import onnx as onnx_importer
from modelport.registry.artifact import Artifact


def is_module(obj: Any) -> bool:
    return any(
        cls.__module__.startswith("torch.nn") and cls.__name__ == "Module"
        for cls in type(obj).__mro__
    )


def _tensors(sample: Any) -> tuple[Any, ...]:
    import numpy as np
    import torch

    items = sample if isinstance(sample, (tuple, list)) else (sample,)
    out = []
    for item in items:
        tensor = torch.from_numpy(np.asarray(item)) if not isinstance(item, torch.Tensor) else item
        if tensor.ndim == 0:
            raise InvalidInput("sample inputs need a batch dimension")
        if tensor.shape[0] == 1:  # a batch of one would be specialised away by the exporter
            tensor = torch.cat([tensor, tensor])
        out.append(tensor)
    return tuple(out)


def from_module(
    module: Any,
    folder: Path,
    sample_input: Any,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
) -> Artifact:
    try:
        import torch
    except ImportError:
        raise MissingDependency("torch", "torch") from None
    if sample_input is None:
        raise InvalidInput("registering a PyTorch module needs sample_input (one batch of inputs)")
    args = _tensors(sample_input)
    module = module.eval()
    with torch.no_grad():
        outputs = module(*args)
    n_out = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    in_names = list(
        input_names or (["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))])
    )
    out_names = list(
        output_names or (["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)])
    )
    if len(in_names) != len(args) or len(out_names) != n_out:
        raise InvalidInput(
            f"the module takes {len(args)} input(s) and returns {n_out} output(s); "
            f"got names {in_names} and {out_names}"
        )
    target = folder / "model.onnx"
    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            program = torch.onnx.export(
                module,
                args,
                input_names=in_names,
                output_names=out_names,
                dynamic_shapes=tuple({0: batch} for _ in args),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
            program.save(str(target))
    except Exception as exc:  # the exporter raises many types; report one line
        raise BackendError(f"PyTorch could not export the module to ONNX: {exc}") from None
    return onnx_importer.from_path(target)
