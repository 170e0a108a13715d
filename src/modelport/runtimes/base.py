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
    # 2-D inputs the caller will pass feature-major, [features, batch] (column data without a
    # transpose); a runtime that can take them so lists them in its ``feature_major``
    feature_major: tuple[str, ...] = ()


@runtime_checkable
class Runtime(Protocol):
    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    signature: Signature
    # inputs this instance takes as [features, batch] (asked for in RuntimeOptions.feature_major)
    feature_major: frozenset[str]

    @classmethod
    def load(
        cls, path: Path, signature: Signature | None = None, options: RuntimeOptions | None = None
    ) -> Runtime: ...

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
