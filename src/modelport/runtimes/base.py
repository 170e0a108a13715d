"""The Runtime protocol: the only thing serving and batch call.

runtime = OnnxRuntime.load(path, signature, options)
runtime.signature            # ordered inputs and outputs
runtime.predict({"input": batch})  -> {"output": array}
runtime.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from modelport.signature import Signature


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Knobs every backend understands; ``extra`` carries backend-specific ones."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RuntimeOptions:
        """The options a ``Settings`` asks for (``MODELPORT_INTRA_OP_THREADS`` ...), with
        ``overrides`` (e.g. ``intra_op_threads=1``) on top."""
        values = {"intra_op_threads": settings.intra_op_threads,
                  "inter_op_threads": settings.inter_op_threads,
                  "graph_optimization": settings.graph_optimization}  # fmt: skip
        return cls(**{**values, **overrides})


@runtime_checkable
class Runtime(Protocol):
    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    signature: Signature

    @classmethod
    def load(
        cls, path: Path, signature: Signature | None = None, options: RuntimeOptions | None = None
    ) -> Runtime: ...

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
