"""Open Inference Protocol (KServe V2) over REST, with the binary tensor data extension.

Handlers take the raw body and headers and return ``(status, body, headers)``; ``app.py`` routes
to them. JSON is parsed with orjson into plain dicts and checked by hand: no schema layer on the
request path. A binary request is ``Inference-Header-Content-Length`` bytes of JSON followed by
each input's raw bytes (``parameters.binary_data_size``); outputs are sent raw when the request
asks (``binary_data_output`` or an output's ``binary_data``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from modelport.errors import InvalidInput, ModelportError
from modelport.serving.codecs import DATATYPES, datatype_of, json_data, to_raw
from modelport.serving.dataplane import DataPlane
from modelport.serving.messages import InferenceRequest, InferenceResponse, Tensor
from modelport.serving.nonfinite import nonfinite_json

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]

JSON: Headers = [(b"content-type", b"application/json")]
HEADER_LENGTH = b"inference-header-content-length"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def reply(data: Any, status: int = 200) -> Reply:
    return status, orjson.dumps(data, default=_default, option=_NUMPY), JSON


def _default(value: Any) -> Any:
    """What orjson cannot write itself: string tensors, float16 scalars, bytes."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot encode {type(value).__name__}")


def error_reply(exc: ModelportError) -> Reply:
    return exc.status, orjson.dumps({"error": exc.message}), JSON


def parse_json(body: bytes | memoryview) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        request = _with_constants(body, exc)
    if not isinstance(request, dict):
        raise InvalidInput("the request body must be a JSON object")
    return request


def _with_constants(body: bytes | memoryview, error: Exception) -> Any:
    """A body that spells NaN, Infinity or -Infinity as bare words: not JSON, but what TF Serving
    and Triton write and what Python's json, rapidjson and so tritonclient send. Anything else
    orjson refused is a 400 with orjson's reason."""
    refused = InvalidInput(f"the request body is not valid JSON: {error}")
    raw = bytes(body)
    if b"NaN" not in raw and b"Infinity" not in raw:
        raise refused from None
    try:
        parsed = json.loads(raw.decode("utf-8"), parse_constant=float)
        orjson.dumps(parsed)  # what json takes and orjson would not write (lone surrogates)
    except (ValueError, TypeError, RecursionError):
        raise refused from None
    return parsed


class RestV2:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def live(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        return reply({"live": self.plane.live()})

    async def ready(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        ok = self.plane.ready()
        return reply({"ready": ok}, 200 if ok else 503)

    async def server_metadata(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        return reply(self.plane.server_metadata())

    async def model_metadata(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        return reply(self.plane.model_metadata(self.plane.model(name, version)))

    async def model_ready(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        ok = self.plane.model_ready(name, version)
        return reply({"name": name, "ready": ok}, 200 if ok else 400)

    async def infer(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        request = InferenceRequest(name, [], version, protocol="rest")
        traceparent = headers.get(b"traceparent")
        if traceparent is not None:
            request.traceparent = traceparent.decode("latin-1")
        binary: list[bool] | bool = False
        try:
            binary = _decode(request, body, headers.get(HEADER_LENGTH))
        except InvalidInput as exc:
            request.error = exc
        return _encode(await self.plane.infer(request), binary)

    # -- repository (admin) --------------------------------------------------------------------

    async def repository_index(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        return reply(self.plane.repository_index())

    async def load(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        await self.plane.load(name)
        return reply({"name": name, "loaded": True})

    async def unload(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        await self.plane.unload(name)
        return reply({"name": name, "unloaded": True})


def _decode(request: InferenceRequest, body: bytes, length: bytes | None) -> list[bool] | bool:
    """Fill ``request`` from a JSON (or binary extension) body; returns, per requested output,
    whether to send it binary (one bool for every output when the request names none)."""
    binary: Any = b""
    if length is not None:
        size = _header_length(length, len(body))
        view = memoryview(body)
        body, binary = view[:size], view[size:]
    parsed = parse_json(body)
    request.inputs = _inputs(parsed, binary)
    request.id = parsed.get("id")
    default = _binary_default(parsed)
    outputs = parsed.get("outputs")
    if outputs is None:
        return default
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    names, flags = [], []
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each requested output needs a 'name' string")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"parameters of output {item['name']!r} must be an object")
        names.append(item["name"])
        flags.append(params.get("binary_data", default) is True)
    request.outputs = names
    return flags


def _inputs(request: dict, binary: Any) -> list[Tensor]:
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    inputs: list[Tensor] = []
    offset = 0
    for tensor in tensors:
        if not isinstance(tensor, dict):
            raise InvalidInput("each input must be a JSON object")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidInput("each input needs a 'name' string")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInput(f"input {name!r} is {datatype!r}: its datatype must be one of "
                               f"{', '.join(DATATYPES)}")  # fmt: skip
        size = _binary_size(tensor.get("parameters"), name)
        data = tensor.get("data")
        if size is not None:
            if "data" in tensor:
                raise InvalidInput(f"input {name!r} has both 'data' and binary_data_size")
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input {name!r} declares {size} bytes of binary data but only "
                    f"{len(binary) - offset} remain in the body"
                )
            data = binary[offset : offset + size]
            offset += size
        elif data is None:
            raise InvalidInput(f"input {name!r} has no data")
        inputs.append(Tensor(name, data, datatype, tensor.get("shape")))
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes of binary data no input claims"
        )
    return inputs


def _encode(response: InferenceResponse, binary: list[bool] | bool) -> Reply:
    results = response.outputs
    flags = [binary] * len(results) if isinstance(binary, bool) else binary
    outputs, blobs = [], []
    for (name, array), as_binary in zip(results.items(), flags, strict=True):
        tensor: dict[str, Any] = {
            "name": name, "datatype": datatype_of(array), "shape": list(array.shape),
        }  # fmt: skip
        if as_binary:
            blob = to_raw(array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif name in response.nonfinite:
            tensor["data"] = nonfinite_json(json_data(array))
        else:
            tensor["data"] = json_data(array)
        outputs.append(tensor)
    head: dict[str, Any] = {"model_name": response.model, "model_version": str(response.version)}
    if response.id is not None:
        head["id"] = response.id
    head["outputs"] = outputs
    text = orjson.dumps(head, default=_default, option=_NUMPY)
    if not blobs:
        return 200, text, JSON
    headers = [
        (b"content-type", b"application/octet-stream"),
        (HEADER_LENGTH, str(len(text)).encode()),
    ]
    return 200, b"".join([text, *blobs]), headers


def _header_length(value: bytes, body_length: int) -> int:
    if not value.isdigit():
        raise InvalidInput("Inference-Header-Content-Length must be a non-negative integer")
    size = int(value)
    if size > body_length:
        raise InvalidInput(
            f"Inference-Header-Content-Length is {size} but the body has only {body_length} bytes"
        )
    return size


def _binary_size(params: Any, name: str) -> int | None:
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidInput(f"parameters of input {name!r} must be an object")
    size = params.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise InvalidInput(f"binary_data_size of input {name!r} must be a non-negative integer")
    return size


def _binary_default(request: dict) -> bool:
    params = request.get("parameters")
    return isinstance(params, dict) and params.get("binary_data_output") is True
