"""The protocol-agnostic data plane: health, metadata, inference and repository calls.

    plane = DataPlane(models, timeout=30.0)
    response = await plane.infer(InferenceRequest("digits", [Tensor("input", x)], version="3"))
    response.outputs["probabilities"]

Transports (V2 REST and gRPC, TF-Serving REST) decode their wire format into one
``InferenceRequest`` (messages.py), make this one call, and encode the ``InferenceResponse``.
Validation (names, datatypes, shapes, rows, ranges) and metrics happen here, the same for every
protocol. Everything raises ``modelport.errors``; transports map ``.status`` to their own codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._version import __version__
from modelport.errors import InvalidInput, NotFound, NotReady, Timeout
from modelport.monitoring.tracing import TRACE
from modelport.serving.codecs import coerce_values, decode_tensor, signature_datatype
from modelport.serving.messages import InferenceRequest, InferenceResponse, Tensor
from modelport.uri import parse_version, validate_alias, validate_name

if TYPE_CHECKING:
    from modelport.serving.limits import Limiter
    from modelport.serving.models import LoadedModel, ModelSet

SERVER_NAME = "modelport"
EXTENSIONS = (
    "binary_tensor_data",
    "model_repository",
    "tfserving_rest",
    "metrics",
    "model_configuration",
    "statistics",
    "generate",
)


class DataPlane:
    def __init__(self, models: ModelSet, timeout: float = 30.0) -> None:
        self.models = models
        self.timeout = timeout
        self.limiter: Limiter | None = None  # per-client limits, shared by the transports
        # called after each reply as observe(request, model, feed, response, started); each must
        # be quick and never raise (monitoring hands its work to its own threads)
        self.observers: list[Callable[..., None]] = []

    # -- health and metadata -------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.models.all_ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model(
        self, name: str, version: str | int | None = None, label: str | None = None
    ) -> LoadedModel:
        """The loaded model a request addresses; names are checked before anything is looked up."""
        validate_name(name)
        number = None
        if version not in (None, ""):
            try:
                number = parse_version(version)
            except InvalidInput:
                raise NotFound(f"model {name!r} has no version {version!r}") from None
        if label is not None:
            validate_alias(label)
        return self.models.get(name, number, label)

    def model_ready(self, name: str, version: str | int | None = None) -> bool:
        """False while loading; unknown names and versions raise NotFound (404), not False."""
        try:
            model = self.model(name, version)
        except NotReady:
            return False
        return self.models.is_ready(model.name, model.version)

    def model_metadata(self, model: LoadedModel) -> dict[str, Any]:
        signature = model.signature
        return {
            "name": model.name,
            "versions": [str(v) for v in self.models.versions(model.name)],
            "platform": model.platform,
            "inputs": _tensors(signature.inputs),
            "outputs": _tensors(signature.outputs),
        }

    # -- inference -----------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """The one call of every transport: resolve the model, check and decode the inputs
        against its signature, run it (within the timeout), check the outputs; counted in the
        metrics whatever the outcome, once the model is known."""
        started = perf_counter() if self.observers else 0.0
        model = self.model(request.model, request.version, request.label)
        trace = TRACE.get()  # None unless tracing is on and this request is sampled
        if trace is not None:
            trace.entered(model.name, model.version)
        with self.models.metrics.request(model.name, model.version, request.protocol):
            if request.error is not None:  # the transport could not decode the request
                raise request.error
            feed = _inputs(model, request.inputs)
            wanted = _wanted(model, request.outputs)
            try:
                async with asyncio.timeout(self.timeout):
                    results = await model.run(feed)
            except TimeoutError:
                raise Timeout(
                    f"inference on {model.name!r} version {model.version} took longer than "
                    f"{self.timeout:g}s"
                ) from None
            outputs = _outputs(model, results, wanted)
        nonfinite = _nonfinite(outputs)
        if nonfinite:
            count = sum(int(outputs[name].size - np.isfinite(outputs[name]).sum())
                        for name in nonfinite)  # fmt: skip
            self.models.metrics.nonfinite_outputs(model.name, model.version, request.protocol,
                                                  count)  # fmt: skip
        if trace is not None:
            trace.answered()
        response = InferenceResponse(model.name, model.version, outputs, request.id, nonfinite)
        for observe in self.observers:
            observe(request, model, feed, response, started)
        return response

    # -- repository ----------------------------------------------------------------------------

    def repository_index(self) -> list[dict[str, Any]]:
        return [
            {**row, "version": "" if row["version"] is None else str(row["version"])}
            for row in self.models.index()
        ]

    async def load(self, name: str) -> None:
        await self.models.load(validate_name(name))

    async def unload(self, name: str) -> None:
        await self.models.unload(validate_name(name))


def _tensors(specs: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "datatype": signature_datatype(s.dtype), "shape": list(s.shape)}
        for s in specs
    ]


def _inputs(model: LoadedModel, tensors: list[Tensor]) -> dict[str, np.ndarray]:
    """The request's tensors decoded as the model's inputs, checked against its signature."""
    if not tensors:
        raise InvalidInput("the request has no inputs")
    signature = model.signature
    feed: dict[str, np.ndarray] = {}
    for tensor in tensors:
        spec = _spec(model, tensor.name)
        if spec.name in feed:
            raise InvalidInput(f"input {spec.name!r} is given twice")
        data = tensor.data
        if tensor.datatype is not None:
            expected = signature_datatype(spec.dtype)
            if tensor.datatype != expected:
                raise InvalidInput(
                    f"input {spec.name!r} is {tensor.datatype}, the model expects {expected} "
                    f"({spec.describe()})"
                )
            if isinstance(data, bytes | memoryview):
                data = decode_tensor(spec.name, expected, tensor.shape, raw=data)
            elif not isinstance(data, np.ndarray):
                data = decode_tensor(spec.name, expected, tensor.shape, data=data)
        elif not isinstance(data, np.ndarray):
            data = coerce_values(spec.name, spec.numpy_dtype, data)
        feed[spec.name] = data
    signature.check_names(feed)  # dtypes, shapes, rows, ranges: at the runtime boundary, once
    return feed


def _spec(model: LoadedModel, name: str | None) -> Any:
    signature = model.signature
    if name is None:
        if len(signature.inputs) != 1:
            raise InvalidInput(
                f"model {model.name!r} takes {signature.input_names}: the request must name "
                "each of them"
            )
        return signature.inputs[0]
    for spec in signature.inputs:
        if spec.name == name:
            return spec
    raise InvalidInput(
        f"model {model.name!r} has no input {name!r}; inputs: {signature.input_names}"
    )


def _wanted(model: LoadedModel, names: list[str] | None) -> list[str] | None:
    if names is None:
        return None
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidInput(f"output(s) {twice} are asked for twice")
    known = model.signature.output_names
    unknown = [name for name in names if name not in known]
    if known and unknown:
        raise InvalidInput(f"model {model.name!r} has no output(s) {unknown}; outputs: {known}")
    return names


def _outputs(
    model: LoadedModel, results: dict[str, np.ndarray], wanted: list[str] | None
) -> dict[str, np.ndarray]:
    if wanted is None:
        return results
    missing = [name for name in wanted if name not in results]
    if missing:
        raise InvalidInput(f"model {model.name!r} produced no output(s) {missing}")
    return {name: results[name] for name in wanted}


def _nonfinite(outputs: dict[str, np.ndarray]) -> frozenset[str]:
    """The float outputs holding NaN or an infinity (never written as JSON null)."""
    return frozenset(
        name for name, array in outputs.items()
        if array.dtype.kind == "f" and array.size and not np.isfinite(array).all()
    )  # fmt: skip
