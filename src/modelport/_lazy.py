"""Public names of a package, imported on first use (``import modelport`` stays light).

__getattr__, __dir__ = lazy(__name__, {"predict_batch": "modelport.batch.api"}, __all__)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any

Getattr = Callable[[str], Any]


def lazy(package: str, table: dict[str, str],
         names: Iterable[str] = ()) -> tuple[Getattr, Callable[[], list[str]]]:  # fmt: skip
    """A module ``__getattr__`` that imports ``table[name]`` and caches the value in the
    package, and a ``__dir__`` listing ``names`` (default: the table's keys)."""
    listed = sorted(names or table)

    def getattr_(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(table[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return listed

    return getattr_, dir_
