"""The protocol-agnostic data plane: health, metadata, inference and repository calls.

    plane = DataPlane(models, timeout=30.0)
    model = plane.model("digits", "3")              # validates the name first; NotFound, NotReady
    outputs = await plane.infer(model, {"input": x}, "rest")

REST (V2 and TF-Serving) and gRPC transports decode their wire format, call this, and encode.
Everything raises ``modelport.errors``; transports map ``.status`` to their own codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._version import __version__
from modelport.errors import InvalidInput, ModelportError, NotFound, NotReady, Timeout
from modelport.serving.codecs import signature_datatype
from modelport.uri import parse_version, validate_alias, validate_name

if TYPE_CHECKING:
    from modelport.serving.models import LoadedModel, ModelSet

SERVER_NAME = "modelport"
EXTENSIONS = ("binary_tensor_data", "model_repository", "tfserving_rest", "metrics")


class DataPlane:
    def __init__(self, models: ModelSet, timeout: float = 30.0) -> None:
        self.models = models
        self.timeout = timeout

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

    def check_input(self, model: LoadedModel, name: str, datatype: str) -> None:
        """Reject an input the model does not take, or one declared with another datatype."""
        for spec in model.signature.inputs:
            if spec.name == name:
                expected = signature_datatype(spec.dtype)
                if datatype != expected:
                    raise InvalidInput(
                        f"input {name!r} is {datatype}, the model expects {expected} "
                        f"({spec.describe()})"
                    )
                return
        raise InvalidInput(
            f"model {model.name!r} has no input {name!r}; inputs: {model.signature.input_names}"
        )

    def check_outputs(self, model: LoadedModel, names: Iterable[str]) -> None:
        known = model.signature.output_names
        unknown = [name for name in names if name not in known]
        if known and unknown:
            raise InvalidInput(f"model {model.name!r} has no output(s) {unknown}; outputs: {known}")

    @contextlib.contextmanager
    def decoding(self, model: LoadedModel, protocol: str) -> Iterator[None]:
        """Count a request rejected while decoding (it never reaches ``infer``) as an error."""
        try:
            yield
        except ModelportError as exc:
            with self.models.metrics.request(model.name, model.version, protocol) as request:
                request.fail(exc.status)
            raise

    async def infer(
        self, model: LoadedModel, inputs: Mapping[str, np.ndarray], protocol: str
    ) -> dict[str, np.ndarray]:
        try:
            async with asyncio.timeout(self.timeout):
                return await model.infer(inputs, protocol)
        except TimeoutError:
            raise Timeout(
                f"inference on {model.name!r} version {model.version} took longer than "
                f"{self.timeout:g}s"
            ) from None

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
