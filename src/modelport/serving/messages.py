"""The neutral request and reply every transport builds and reads: no HTTP, gRPC or JSON here.

    request = InferenceRequest("digits", [Tensor("input", x)], protocol="grpc")
    response = await plane.infer(request)          # one call: resolve, validate, run, check
    response.outputs["probabilities"]              # numpy arrays, in the order asked for

A transport decodes its wire format into an ``InferenceRequest`` and encodes the
``InferenceResponse``; resolving the model, checking names, datatypes, shapes and ranges, and
recording metrics happen once, in ``DataPlane.infer``, the same for every protocol.

A ``Tensor`` carries what the client sent, as little decoded as the wire allows:

- ``data`` is a numpy array, nested lists of JSON values, a flat list of typed values (gRPC
  contents) or raw little-endian bytes (``bytes``/``memoryview``: V2 binary data);
- ``datatype`` is the protocol datatype the client declared ("FP32"), checked against the model;
  None takes the model's own (TF Serving JSON has none);
- ``shape`` is the declared shape; None takes the nesting of ``data``;
- ``name`` None means the model's only input (TF Serving's bare ``instances``).

A transport that cannot decode a body still makes its one call, with ``error`` set: the data plane
resolves the model first (an unknown model stays a 404) and counts the refusal in its metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import ModelportError


@dataclass(slots=True)
class Tensor:
    name: str | None
    data: Any
    datatype: str | None = None
    shape: Any = None


@dataclass(slots=True)
class InferenceRequest:
    model: str
    inputs: list[Tensor]
    version: str | int | None = None
    label: str | None = None  # a registry alias (TF Serving's version label)
    outputs: list[str] | None = None  # names wanted, in order; None: every output
    protocol: str = "python"  # the metrics label: "rest", "grpc", "tfserving", ...
    id: str | None = None
    error: ModelportError | None = None  # why the transport could not decode the rest
    traceparent: str | None = None  # the W3C trace context header, as received


@dataclass(slots=True)
class InferenceResponse:
    model: str
    version: int
    outputs: dict[str, np.ndarray]
    id: str | None = None
    nonfinite: frozenset[str] = field(default_factory=frozenset)  # outputs holding NaN or inf
