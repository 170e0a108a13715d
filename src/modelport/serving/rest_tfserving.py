"""TensorFlow Serving REST compatibility: ``/v1/models/{m}[/versions/{v}|/labels/{alias}]``.

    GET  /v1/models/digits                    -> {"model_version_status": [...]}
    GET  /v1/models/digits/metadata           -> {"model_spec": ..., "metadata": {...}}
    POST /v1/models/digits:predict            {"instances": [...]} -> {"predictions": [...]}
                                              {"inputs": ...}      -> {"outputs": ...}
Registry aliases act as TF Serving version labels. Errors are ``{"error": "..."}`` like TF Serving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, NotFound
from modelport.serving.codecs import coerce_values
from modelport.serving.dataplane import DataPlane
from modelport.serving.rest_v2 import Reply, parse_json, reply

if TYPE_CHECKING:
    from modelport.serving.models import LoadedModel
    from modelport.signature import Signature, TensorSpec

_TF_DTYPES = {
    "bool": "DT_BOOL", "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
    "uint64": "DT_UINT64", "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32",
    "int64": "DT_INT64", "float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "bfloat16": "DT_BFLOAT16", "string": "DT_STRING",
}  # fmt: skip
_SIGNATURE = "serving_default"
_PREDICT = ":predict"


class RestTFServing:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    # -- status and metadata -------------------------------------------------------------------

    async def status(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        model = self.plane.model(name, version)
        versions = [model.version] if version else self.plane.models.versions(model.name)
        return reply({"model_version_status": [
            {"version": str(v), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
            for v in sorted(versions, reverse=True)
        ]})  # fmt: skip

    async def status_label(
        self, body: bytes, headers: dict[bytes, bytes], name: str, label: str
    ) -> Reply:
        model = self.plane.model(name, label=label)
        return await self.status(body, headers, model.name, str(model.version))

    async def metadata(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        return reply(_metadata(self.plane.model(name, version)))

    async def metadata_label(
        self, body: bytes, headers: dict[bytes, bytes], name: str, label: str
    ) -> Reply:
        return reply(_metadata(self.plane.model(name, label=label)))

    # -- predict -------------------------------------------------------------------------------

    async def predict(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        if version is None:
            name = _verb(name)
        else:
            version = _verb(version)
        return await self._predict(self.plane.model(name, version), body)

    async def predict_label(
        self, body: bytes, headers: dict[bytes, bytes], name: str, label: str
    ) -> Reply:
        return await self._predict(self.plane.model(name, label=_verb(label)), body)

    async def _predict(self, model: LoadedModel, body: bytes) -> Reply:
        with self.plane.decoding(model, "tfserving"):
            request, inputs = _decode(model, body)
        results = await self.plane.infer(model, inputs, "tfserving")
        names = model.signature.output_names or list(results)
        if "inputs" in request:
            if len(names) == 1:
                return reply({"outputs": results[names[0]]})
            return reply({"outputs": {n: results[n] for n in names}})
        if len(names) == 1:
            return reply({"predictions": results[names[0]]})
        count = len(results[names[0]]) if results[names[0]].ndim else 1
        return reply({"predictions": [{n: results[n][i] for n in names} for i in range(count)]})


def _decode(model: LoadedModel, body: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    request = parse_json(body)
    signature_name = request.get("signature_name", _SIGNATURE)
    if signature_name != _SIGNATURE:
        raise InvalidInput(
            f"model {model.name!r} has no signature {signature_name!r}; use {_SIGNATURE!r}"
        )
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows == has_columns:
        raise InvalidInput("the request needs exactly one of 'instances' or 'inputs'")
    if has_rows:
        return request, _rows(model.signature, request["instances"])
    return request, _columns(model.signature, request["inputs"])


def _verb(segment: str) -> str:
    head, sep, verb = segment.rpartition(":")
    if not sep:
        raise NotFound(f"no route POST .../{segment}; TF Serving predicts at .../{segment}:predict")
    if sep + verb != _PREDICT:
        raise NotFound(f"the {verb!r} method is not supported; only 'predict' is")
    return head


def _value(spec: TensorSpec, value: Any) -> np.ndarray:
    return coerce_values(spec.name, spec.numpy_dtype, _unwrap_b64(value))


def _unwrap_b64(value: Any) -> Any:
    """TF Serving sends binary strings as {"b64": "..."}."""
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        import base64
        import binascii

        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise InvalidInput("a {'b64': ...} value is not valid base64") from None
        try:
            return raw.decode("utf-8")  # string tensors hold text; runtimes take str
        except UnicodeDecodeError:
            return raw
    if isinstance(value, list):
        return (
            [_unwrap_b64(v) for v in value]
            if value and isinstance(value[0], dict | list)
            else value
        )
    return value


def _rows(signature: Signature, instances: Any) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    if len(signature.inputs) == 1 and not (
        isinstance(instances[0], dict) and set(instances[0]) == {signature.inputs[0].name}
    ):
        spec = signature.inputs[0]
        return {spec.name: _value(spec, instances)}
    names = signature.input_names
    for row in instances:
        if not isinstance(row, dict) or set(row) != set(names):
            raise InvalidInput(f"each instance must be an object with exactly the inputs {names}")
    return {spec.name: _value(spec, [row[spec.name] for row in instances])
            for spec in signature.inputs}  # fmt: skip


def _columns(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict) and set(inputs) <= set(signature.input_names) and inputs:
        return {name: _value(signature.input(name), value) for name, value in inputs.items()}
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"the model takes {signature.input_names}: 'inputs' must name each of them"
        )
    spec = signature.inputs[0]
    return {spec.name: _value(spec, inputs)}


def _metadata(model: LoadedModel) -> dict[str, Any]:
    signature = model.signature
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": {_SIGNATURE: {
            "inputs": {s.name: _tensor_info(s) for s in signature.inputs},
            "outputs": {s.name: _tensor_info(s) for s in signature.outputs},
            "method_name": "tensorflow/serving/predict",
        }}}},
    }  # fmt: skip


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _TF_DTYPES.get(spec.dtype, "DT_INVALID"),
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape],
                         "unknown_rank": False},
        "name": spec.name,
    }  # fmt: skip
