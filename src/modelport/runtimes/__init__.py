"""Backends that run one artifact, chosen by the version's format."""

from __future__ import annotations

from pathlib import Path

from modelport.errors import InvalidInput
from modelport.runtimes.base import Runtime, RuntimeOptions
from modelport.signature import Signature


def backends() -> dict[str, type[Runtime]]:
    """Backend classes by name, in order of preference."""
    from modelport.runtimes.onnx import OnnxRuntime

    return {OnnxRuntime.name: OnnxRuntime}


def for_format(format: str, backend: str | None = None) -> type[Runtime]:
    available = backends()
    if backend is not None:
        if backend not in available:
            raise InvalidInput(f"unknown runtime {backend!r}; available: {', '.join(available)}")
        cls = available[backend]
        if format not in cls.formats:
            raise InvalidInput(f"runtime {backend!r} cannot load {format!r} artifacts")
        return cls
    for cls in available.values():
        if format in cls.formats:
            return cls
    raise InvalidInput(f"no installed runtime can load {format!r} artifacts")


def open_artifact(
    path: Path,
    format: str,
    signature: Signature | None = None,
    options: RuntimeOptions | None = None,
    backend: str | None = None,
) -> Runtime:
    return for_format(format, backend).load(Path(path), signature, options)


__all__ = ["Runtime", "RuntimeOptions", "backends", "for_format", "open_artifact"]
