"""modelport: register, compress, convert and serve trained models.

import modelport
version = modelport.register(model, "digits", sample_input=x, alias="production")
runtime = modelport.load("digits@production")
runtime.predict({"input": x})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelport._lazy import lazy
from modelport._version import __version__
from modelport.errors import (
    BackendError,
    Conflict,
    CorruptArtifact,
    Forbidden,
    InvalidInput,
    InvalidReference,
    MissingDependency,
    ModelportError,
    NotFound,
    NotReady,
    PayloadTooLarge,
    Timeout,
    Unauthorized,
)

if TYPE_CHECKING:
    from modelport.api import load, register
    from modelport.registry import ModelVersion, Registry
    from modelport.runtimes import Runtime, RuntimeOptions
    from modelport.settings import Settings
    from modelport.signature import Signature, TensorSpec
    from modelport.uri import ModelRef

_LAZY = {
    "register": "modelport.api",
    "load": "modelport.api",
    "Registry": "modelport.registry",
    "ModelVersion": "modelport.registry",
    "Runtime": "modelport.runtimes",
    "RuntimeOptions": "modelport.runtimes",
    "Settings": "modelport.settings",
    "Signature": "modelport.signature",
    "TensorSpec": "modelport.signature",
    "ModelRef": "modelport.uri",
}

__all__ = [
    "BackendError",
    "Conflict",
    "CorruptArtifact",
    "Forbidden",
    "InvalidInput",
    "InvalidReference",
    "MissingDependency",
    "ModelRef",
    "ModelVersion",
    "ModelportError",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "Registry",
    "Runtime",
    "RuntimeOptions",
    "Settings",
    "Signature",
    "TensorSpec",
    "Timeout",
    "Unauthorized",
    "__version__",
    "load",
    "register",
]


__getattr__, __dir__ = lazy(__name__, _LAZY, __all__)
