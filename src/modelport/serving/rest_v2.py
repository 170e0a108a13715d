"""Open Inference Protocol (KServe V2) over REST, with the binary tensor data extension.

Handlers take the raw body and headers and return ``(status, body, headers)``; ``app.py`` routes
to them. JSON is parsed with orjson into plain dicts and checked by hand: no schema layer on the
request path. A binary request is ``Inference-Header-Content-Length`` bytes of JSON followed by
each input's raw bytes (``parameters.binary_data_size``); outputs are sent raw when the request
asks (``binary_data_output`` or an output's ``binary_data``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelport.errors import InvalidInput, ModelportError
from modelport.serving.codecs import datatype_of, decode_tensor, json_data, to_raw
from modelport.serving.dataplane import DataPlane

if TYPE_CHECKING:
    from modelport.serving.models import LoadedModel

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
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidInput("the request body must be a JSON object")
    return request


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
        model = self.plane.model(name, version)
        binary = b""
        length = headers.get(HEADER_LENGTH)
        if length is not None:
            with self.plane.decoding(model, "rest"):
                size = _header_length(length, len(body))
            view = memoryview(body)
            body, binary = view[:size], view[size:]
        with self.plane.decoding(model, "rest"):
            request = parse_json(body)
            inputs = self._inputs(model, request, binary)
            wanted = self._wanted(model, request)
        results = await self.plane.infer(model, inputs, "rest")
        return self._response(model, request, results, wanted)

    def _inputs(self, model: LoadedModel, request: dict, binary: Any) -> dict[str, np.ndarray]:
        tensors = request.get("inputs")
        if not isinstance(tensors, list) or not tensors:
            raise InvalidInput("'inputs' must be a non-empty list of tensors")
        inputs: dict[str, np.ndarray] = {}
        offset = 0
        for tensor in tensors:
            if not isinstance(tensor, dict):
                raise InvalidInput("each input must be a JSON object")
            name = tensor.get("name")
            if not isinstance(name, str):
                raise InvalidInput("each input needs a 'name' string")
            if name in inputs:
                raise InvalidInput(f"input {name!r} is given twice")
            datatype = tensor.get("datatype")
            self.plane.check_input(model, name, datatype)
            size = _binary_size(tensor.get("parameters"), name)
            if size is None:
                inputs[name] = decode_tensor(
                    name, datatype, tensor.get("shape"), tensor.get("data")
                )
                continue
            if "data" in tensor:
                raise InvalidInput(f"input {name!r} has both 'data' and binary_data_size")
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input {name!r} declares {size} bytes of binary data but only "
                    f"{len(binary) - offset} remain in the body"
                )
            raw = binary[offset : offset + size]
            offset += size
            inputs[name] = decode_tensor(name, datatype, tensor.get("shape"), raw=raw)
        if offset != len(binary):
            raise InvalidInput(
                f"the body has {len(binary) - offset} bytes of binary data no input claims"
            )
        return inputs

    def _wanted(self, model: LoadedModel, request: dict) -> list[tuple[str, bool]] | None:
        """Requested outputs as (name, binary); None = all outputs, binary by request default."""
        outputs = request.get("outputs")
        if outputs is None:
            return None
        if not isinstance(outputs, list):
            raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
        default = _binary_default(request)
        wanted = []
        for item in outputs:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInput("each requested output needs a 'name' string")
            params = item.get("parameters") or {}
            if not isinstance(params, dict):
                raise InvalidInput(f"parameters of output {item['name']!r} must be an object")
            flag = params.get("binary_data", default)
            wanted.append((item["name"], flag is True))
        self.plane.check_outputs(model, [name for name, _ in wanted])
        return wanted

    def _response(
        self, model: LoadedModel, request: dict, results: dict[str, np.ndarray],
        wanted: list[tuple[str, bool]] | None,
    ) -> Reply:  # fmt: skip
        if wanted is None:
            binary = _binary_default(request)
            wanted = [(name, binary) for name in results]
        outputs, blobs = [], []
        for name, as_binary in wanted:
            array = results.get(name)
            if array is None:
                raise InvalidInput(f"model {model.name!r} produced no output {name!r}")
            tensor: dict[str, Any] = {
                "name": name, "datatype": datatype_of(array), "shape": list(array.shape),
            }  # fmt: skip
            if as_binary:
                blob = to_raw(array)
                tensor["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                tensor["data"] = json_data(array)
            outputs.append(tensor)
        response: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
        request_id = request.get("id")
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = outputs
        head = orjson.dumps(response, default=_default, option=_NUMPY)
        if not blobs:
            return 200, head, JSON
        headers = [
            (b"content-type", b"application/octet-stream"),
            (HEADER_LENGTH, str(len(head)).encode()),
        ]
        return 200, b"".join([head, *blobs]), headers

    # -- repository (admin) --------------------------------------------------------------------

    async def repository_index(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        return reply(self.plane.repository_index())

    async def load(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        await self.plane.load(name)
        return reply({"name": name, "loaded": True})

    async def unload(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        await self.plane.unload(name)
        return reply({"name": name, "unloaded": True})


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
