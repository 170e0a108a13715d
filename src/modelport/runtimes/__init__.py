"""Backends that run one artifact, chosen by the version's format."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from modelport.errors import InvalidInput, MissingDependency
from modelport.runtimes.base import Runtime, RuntimeOptions
from modelport.signature import Signature


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend modelport knows, whether or not its package is installed here."""

    name: str
    formats: tuple[str, ...]
    package: str  # the distribution to install
    module: str  # the module that must be importable
    extra: str  # pip install 'modelport[extra]'
    path: str  # "module:Class" of the Runtime

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


KNOWN = (
    BackendInfo("onnxruntime", ("onnx",), "onnxruntime", "onnxruntime", "",
                "modelport.runtimes.onnx:OnnxRuntime"),
    BackendInfo("openvino", ("openvino", "onnx"), "openvino", "openvino", "openvino",
                "modelport.runtimes.openvino:OpenVinoRuntime"),
    BackendInfo("litert", ("tflite",), "ai-edge-litert", "ai_edge_litert", "litert",
                "modelport.runtimes.litert:LiteRtRuntime"),
)  # fmt: skip


def _class(info: BackendInfo) -> type[Runtime]:
    module, _, attr = info.path.partition(":")
    return getattr(import_module(module), attr)


def backends() -> dict[str, type[Runtime]]:
    """Installed backend classes by name, in order of preference (heavy packages not imported)."""
    return {info.name: _class(info) for info in KNOWN if info.installed}


def for_format(format: str, backend: str | None = None) -> type[Runtime]:
    available = backends()
    if backend is not None:
        if backend not in available:
            missing = next((i for i in KNOWN if i.name == backend), None)
            if missing is not None:
                raise MissingDependency(missing.package, missing.extra)
            raise InvalidInput(f"unknown runtime {backend!r}; available: {', '.join(available)}")
        cls = available[backend]
        if format not in cls.formats:
            raise InvalidInput(f"runtime {backend!r} cannot load {format!r} artifacts")
        return cls
    for cls in available.values():
        if format in cls.formats:
            return cls
    for info in KNOWN:
        if format in info.formats:
            raise MissingDependency(info.package, info.extra)
    raise InvalidInput(f"no installed runtime can load {format!r} artifacts")


def open_artifact(
    path: Path,
    format: str,
    signature: Signature | None = None,
    options: RuntimeOptions | None = None,
    backend: str | None = None,
) -> Runtime:
    return for_format(format, backend).load(Path(path), signature, options)


__all__ = [
    "KNOWN",
    "BackendInfo",
    "Runtime",
    "RuntimeOptions",
    "backends",
    "for_format",
    "open_artifact",
]
