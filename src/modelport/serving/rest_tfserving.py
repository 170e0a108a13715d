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
from modelport.serving.dataplane import DataPlane
from modelport.serving.messages import InferenceRequest, InferenceResponse, Tensor
from modelport.serving.nonfinite import nonfinite_json
from modelport.serving.rest_v2 import Reply, parse_json, reply

if TYPE_CHECKING:
    from modelport.serving.models import LoadedModel
    from modelport.serving.rest_explain import RestExplain
    from modelport.signature import TensorSpec

_TF_DTYPES = {
    "bool": "DT_BOOL", "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
    "uint64": "DT_UINT64", "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32",
    "int64": "DT_INT64", "float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "bfloat16": "DT_BFLOAT16", "string": "DT_STRING",
}  # fmt: skip
_SIGNATURE = "serving_default"
_PREDICT, _EXPLAIN = ":predict", ":explain"


class RestTFServing:
    def __init__(self, plane: DataPlane, explain: RestExplain | None = None) -> None:
        self.plane = plane
        self.explainer = explain  # the :explain verb

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
            name, verb = _verb(name)
        else:
            version, verb = _verb(version)
        request = InferenceRequest(name, [], version, protocol="tfserving")
        return await (self._explain if verb == _EXPLAIN else self._predict)(request, body)

    async def predict_label(
        self, body: bytes, headers: dict[bytes, bytes], name: str, label: str
    ) -> Reply:
        label, verb = _verb(label)
        request = InferenceRequest(name, [], label=label, protocol="tfserving")
        return await (self._explain if verb == _EXPLAIN else self._predict)(request, body)

    async def _explain(self, request: InferenceRequest, body: bytes) -> Reply:
        if self.explainer is None:
            raise NotFound("this server does not explain; only 'predict' is supported")
        self.plane.model(request.model, request.version, request.label)  # unknown: 404 first
        _decode(request, body)
        return await self.explainer.run(request, parse_json(body).get("parameters"))

    async def _predict(self, request: InferenceRequest, body: bytes) -> Reply:
        rows = True
        try:
            rows = _decode(request, body)
        except InvalidInput as exc:
            request.error = exc
        response = await self.plane.infer(request)
        results = {name: _encodable(response, name) for name in response.outputs}
        names = list(results)
        if not rows:
            if len(names) == 1:
                return reply({"outputs": results[names[0]]})
            return reply({"outputs": results})
        if len(names) == 1:
            return reply({"predictions": results[names[0]]})
        first = response.outputs[names[0]]
        count = len(first) if first.ndim else 1
        return reply({"predictions": [
            {n: _encodable(response, n, i) for n in names} for i in range(count)
        ]})  # fmt: skip


def _encodable(response: InferenceResponse, name: str, row: int | None = None) -> Any:
    """An output (or one row of it) as orjson writes it; NaN and infinities as TF Serving does."""
    array = response.outputs[name]
    if row is not None:
        array = array[row]
    if name in response.nonfinite and array.dtype.kind == "f" and not np.isfinite(array).all():
        return nonfinite_json(array)
    return array


def _decode(request: InferenceRequest, body: bytes) -> bool:
    """Fill ``request`` from a predict body; True for the row format (``instances``)."""
    parsed = parse_json(body)
    signature_name = parsed.get("signature_name", _SIGNATURE)
    if signature_name != _SIGNATURE:
        raise InvalidInput(
            f"model {request.model!r} has no signature {signature_name!r}; use {_SIGNATURE!r}"
        )
    has_rows, has_columns = "instances" in parsed, "inputs" in parsed
    if has_rows == has_columns:
        raise InvalidInput("the request needs exactly one of 'instances' or 'inputs'")
    request.inputs = _rows(parsed["instances"]) if has_rows else _columns(parsed["inputs"])
    return has_rows


def _verb(segment: str) -> tuple[str, str]:
    head, sep, verb = segment.rpartition(":")
    if not sep:
        raise NotFound(f"no route POST .../{segment}; TF Serving predicts at .../{segment}:predict")
    if sep + verb not in (_PREDICT, _EXPLAIN):
        raise NotFound(f"the {verb!r} method is not supported; only 'predict' and 'explain' are")
    return head, sep + verb


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


def _rows(instances: Any) -> list[Tensor]:
    """Row format: bare values for a one-input model, or objects naming every input."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    first = instances[0]
    if not isinstance(first, dict) or _is_b64(first):
        return [Tensor(None, _unwrap_b64(instances))]
    names = list(first)
    for row in instances:
        if not isinstance(row, dict) or set(row) != set(names):
            raise InvalidInput(f"each instance must be an object with exactly the inputs {names}")
    return [Tensor(name, _unwrap_b64([row[name] for row in instances])) for name in names]


def _columns(inputs: Any) -> list[Tensor]:
    """Columnar format: an object of named inputs, or the one input's value."""
    if isinstance(inputs, dict) and inputs and not _is_b64(inputs):
        return [Tensor(name, _unwrap_b64(value)) for name, value in inputs.items()]
    return [Tensor(None, _unwrap_b64(inputs))]


def _is_b64(value: Any) -> bool:
    return set(value) == {"b64"}


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
