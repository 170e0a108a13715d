"""What every backend does at its edge: inputs made safe to hand over, backend errors translated.

    feed = inputs_for(self.signature, inputs, writable=True)   # checked, contiguous, own memory
    with translated("OpenVINO failed", skip=NOISE):
        request.infer()                                        # -> InvalidInput or BackendError

Callers pass what they have: read-only views (``np.frombuffer`` over a request body, a
``np.load(..., mmap_mode="r")`` file), slices with strides, other byte orders. ``inputs_for``
turns each into what any backend takes (C-contiguous, aligned, native byte order, and writable
when the backend shares the memory), copying only what needs it. ``translated`` is the one place
where a backend's own exception types become ``modelport.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import BackendError, InvalidInput, ModelportError, first_line
from modelport.signature import Signature

# words in a backend's message that mean the input did not fit the model, not a backend fault
INPUT_WORDS = ("invalid", "shape", "dimension")


def inputs_for(
    signature: Signature, inputs: Mapping[str, Any], writable: bool = False
) -> dict[str, np.ndarray]:
    """``inputs`` checked against ``signature`` (names, dtypes, shapes, at least one row) and
    laid out for a backend; ``writable`` for backends that wrap the memory without copying."""
    feed = signature.coerce_inputs(inputs)
    for name, array in feed.items():
        if array.dtype.kind == "O":
            continue
        flags = array.flags
        if not (flags.c_contiguous and flags.aligned) or (writable and not flags.writeable):
            feed[name] = np.array(array, order="C", copy=True)
    return feed


class translated:  # noqa: N801 - used like a function: ``with translated("...")``
    """Backend exceptions raised inside become ``InvalidInput`` (the message speaks of shapes,
    dimensions or invalid arguments, and ``inputs`` is true) or ``BackendError("what: ...")``.
    A class rather than a generator: it wraps every inference call, and costs less this way."""

    __slots__ = ("what", "skip", "inputs")

    def __init__(self, what: str, skip: tuple[str, ...] = (), inputs: bool = True) -> None:
        self.what, self.skip, self.inputs = what, skip, inputs

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if exc is None or isinstance(exc, ModelportError) or not isinstance(exc, Exception):
            return False
        text = first_line(exc, self.skip)
        lowered = text.lower()
        if self.inputs and any(word in lowered for word in INPUT_WORDS):
            raise InvalidInput(f"the model rejected the input: {text}") from None
        raise BackendError(f"{self.what}: {text}") from None
