"""Knowledge distillation: a small student learns the teacher's outputs on unlabeled data.

The teacher is any runtime (so any registered version modelport can run); the student is an MLP of
given hidden sizes or a user's ``torch.nn.Module``. It is exported to ONNX with the teacher's input
and output names, so it is a drop-in replacement.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.compression import mlp
from modelport.compression.data import Dataset
from modelport.compression.training import TrainConfig, import_torch, train
from modelport.errors import InvalidInput
from modelport.signature import Signature


def teacher_outputs(runtime: Any, data: Dataset, chunk: int = 256) -> np.ndarray:
    first = runtime.signature.output_names[0] if runtime.signature.outputs else None
    outs = []
    for batch in data.batches(chunk):
        result = runtime.predict(batch)
        outs.append(result[first] if first in result else next(iter(result.values())))
    return np.concatenate(outs, axis=0)


def _single_matrix_input(signature: Signature, data: Dataset) -> np.ndarray:
    if len(signature.inputs) != 1 or len(signature.inputs[0].shape) != 2:
        raise InvalidInput(
            "distillation into an MLP needs a model with one [batch, features] input; "
            f"this one takes {signature.describe()}"
        )
    x = next(iter(data.inputs.values()))
    if x.dtype.kind != "f":
        raise InvalidInput(f"distillation needs float inputs, got {x.dtype}")
    return x.astype(np.float32)


def load_student(spec: str) -> Any:
    """``path/to/file.py:name``: a torch module, or a callable that returns one."""
    torch = import_torch()
    path_text, sep, attr = spec.rpartition(":")
    path = Path(path_text)
    if not sep or not attr or path.suffix != ".py" or not path.is_file():
        raise InvalidInput(f"student {spec!r} must be FILE.py:NAME naming a module or a factory")
    module_spec = importlib.util.spec_from_file_location(f"modelport_student_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file
        raise InvalidInput(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise InvalidInput(f"{path} has no {attr!r}")
    if not isinstance(obj, torch.nn.Module):
        obj = obj() if callable(obj) else obj
    if not isinstance(obj, torch.nn.Module):
        raise InvalidInput(f"{spec} did not give a torch.nn.Module")
    return obj


def distill(
    teacher: Any,
    data: Dataset,
    folder: Path,
    *,
    hidden: Sequence[int] = (32,),
    student: Any = None,
    config: TrainConfig | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train a student on ``data`` against ``teacher``, export it; return (onnx path, params)."""
    torch = import_torch()
    from modelport.importers.torch import from_module

    config = (config or TrainConfig()).check()
    signature = teacher.signature
    x = _single_matrix_input(signature, data)
    soft = teacher_outputs(teacher, data)
    if soft.ndim != 2 or soft.shape[0] != len(x):
        raise InvalidInput(
            f"distillation needs a [batch, classes] teacher output, got {list(soft.shape)}"
        )
    probabilities = bool(soft.min() >= 0 and np.allclose(soft.sum(axis=1), 1.0, atol=1e-3))
    torch.manual_seed(config.seed)
    if student is None:
        net = mlp.build(x.shape[1], hidden, soft.shape[1], softmax=probabilities)
        student_desc: dict[str, Any] = {
            "kind": "mlp",
            "hidden": [int(h) for h in hidden],
            "activation": "relu",
            "softmax": probabilities,
        }
        forward_logits = net.logits
    else:
        net = student
        student_desc = {"kind": "module", "class": type(student).__qualname__}

        def forward_logits(batch: Any) -> Any:
            out = net(batch)
            return torch.log(out.clamp_min(1e-8)) if probabilities else out

    losses = train(net, forward_logits, x, soft, data.labels, config, "distilling")
    names = signature.input_names, signature.output_names[:1]
    artifact = from_module(net, folder, x[:8], input_names=names[0], output_names=names[1])
    params = {
        "student": student_desc,
        **config.to_dict(),
        "rows": len(x),
        "labelled": data.labels is not None,
        "final_loss": round(losses[-1], 6),
    }
    if data.labels is None:
        params.pop("alpha")
    return artifact.root / artifact.entrypoint, params


def finetune(model: Any, teacher: Any, data: Dataset, config: TrainConfig) -> dict[str, Any]:
    """Fine-tune a pruned MLP graph in place against ``teacher`` (its parent) and labels if any."""
    config = config.check()
    net, layers = mlp.from_onnx(model)
    x = _single_matrix_input(teacher.signature, data)
    soft = teacher_outputs(teacher, data)
    losses = train(net, net.logits, x, soft, data.labels, config, "fine-tuning")
    mlp.write_back(net, layers)
    return {
        **config.to_dict(),
        "rows": len(x),
        "labelled": data.labels is not None,
        "final_loss": round(losses[-1], 6),
    }
