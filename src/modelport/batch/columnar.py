"""The model as batch loads it: feature columns scored feature-major where the backend allows.

    runtime = load_model(spec)                        # rows: quick to load
    runtime, columnar = load_feature_major(spec)      # or None; columnar: inputs taken as
                                                      # [features, rows]

Batch reads feature columns one column at a time; turning them into rows costs more than scoring
a small model. For an ONNX model run by ONNX Runtime, batch loads a copy of the graph with a
Transpose in front of each such 2-D input, which then takes ``[features, rows]``; ONNX Runtime
folds that Transpose into a first Gemm (``transA``), so the results are bit-identical. Every other
model, and every other backend, is loaded as it is and gets rows. The rewrite needs the ``onnx``
package (0.13 CPU-s to import) and a second session: a job's first chunk, one model batch, is
scored by ``load_model``'s, the others by this one (``LocalExecutor``). Serving never sees any of
this: the ``Runtime`` protocol stays ``load``, ``signature``, ``predict``, ``close``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import Conflict
from modelport.signature import Signature, TensorSpec

if TYPE_CHECKING:
    from modelport.batch.job import JobSpec
    from modelport.runtimes import Runtime


def load_model(spec: JobSpec) -> Runtime:
    """The exact version (sha256 checked) as it is, taking rows: the quickest to load."""
    from modelport.registry.reader import open_reader
    from modelport.runtimes import open_artifact

    with open_reader(spec.settings) as registry:
        version = _checked(registry, spec)
        return open_artifact(registry.path(version), version.format, version.signature,
                             spec.runtime_options, spec.backend)  # fmt: skip


def load_feature_major(spec: JobSpec) -> tuple[Runtime, frozenset[str]] | None:
    """The exact version with its vector inputs taken feature-major, and their names; None when
    the backend or the graph does not allow it (the model then takes rows)."""
    from modelport.registry.reader import open_reader
    from modelport.runtimes import for_format, open_artifact

    wanted = spec.fmap.vector_inputs
    if not wanted:
        return None
    with open_reader(spec.settings) as registry:
        version = _checked(registry, spec)
        if version.format != "onnx" or for_format("onnx", spec.backend).name != "onnxruntime":
            return None
        rewritten = feature_major_graph(registry.path(version), version.signature, wanted)
    if rewritten is None:
        return None
    import tempfile

    graph, names, signature = rewritten
    with tempfile.TemporaryDirectory(prefix="modelport-batch-") as tmp:
        path = Path(tmp) / "feature-major.onnx"
        path.write_bytes(graph)
        runtime = open_artifact(path, "onnx", signature, spec.runtime_options, "onnxruntime")
    return runtime, names


def _checked(registry: Any, spec: JobSpec) -> Any:
    version = registry.resolve(spec.model)
    if version.sha256 != spec.sha256:
        raise Conflict(f"{spec.model} changed while the job ran")
    return version


def feature_major_graph(
    path: Path, signature: Signature, names: tuple[str, ...]
) -> tuple[bytes, frozenset[str], Signature] | None:
    """The model with a Transpose in front of each named 2-D input, its names and its signature
    (those inputs' shapes reversed); None when no input changes or the weights live in external
    files."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        return None
    done: list[str] = []
    for value in list(graph.input):
        dims = value.type.tensor_type.shape.dim
        if value.name not in names or len(dims) != 2:
            continue
        rows = f"{value.name}__rows"
        for node in graph.node:
            node.input[:] = [rows if i == value.name else i for i in node.input]
        swapped = helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type,
                                                [_dim(dims[1]), _dim(dims[0])])  # fmt: skip
        graph.input.insert(list(graph.input).index(value), swapped)
        graph.input.remove(value)
        graph.node.insert(0, helper.make_node("Transpose", [value.name], [rows], perm=[1, 0],
                                              name=f"{value.name}__feature_major"))  # fmt: skip
        done.append(value.name)
    if not done:
        return None
    inputs = tuple(TensorSpec(s.name, s.dtype, tuple(reversed(s.shape))) if s.name in done
                   else s for s in signature.inputs)  # fmt: skip
    return model.SerializeToString(), frozenset(done), Signature(inputs, signature.outputs)


def _dim(dim: Any) -> int | str | None:
    if dim.HasField("dim_value"):
        return dim.dim_value
    return dim.dim_param or None
