"""Head sampling of traces: the W3C ``traceparent`` header and OpenTelemetry's samplers.

    parent = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    Sampler("parentbased_traceidratio", "0.01").sample(parent)   # the caller decided: True

Decided before any span exists, so that an unsampled request costs a random number (and, with a
``traceparent``, one parse). A malformed header reads as no header: a new trace.
"""

from __future__ import annotations

import random

from modelport.errors import InvalidInput

SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")  # fmt: skip
_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def parse_traceparent(value: str | bytes | None) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a W3C ``traceparent``, None when absent or malformed.

    parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")[2] is True
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    parts = value.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[:4]
    if len(version) != 2 or version == "ff" or not _HEX.issuperset(version):
        return None
    if (version == "00" and len(parts) != 4) or len(flags) != 2 or not _HEX.issuperset(flags):
        return None
    if len(trace_id) != 32 or trace_id == _ZERO_TRACE or not _HEX.issuperset(trace_id):
        return None
    if len(span_id) != 16 or span_id == _ZERO_SPAN or not _HEX.issuperset(span_id):
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


class Sampler:
    """The OpenTelemetry head samplers, decided before any span exists.

    Sampler("parentbased_traceidratio", "0.01").sample(None)   # True for 1 root in 100
    """

    def __init__(self, name: str = "parentbased_always_on", arg: str | None = None) -> None:
        name = name.strip().lower()
        if name not in SAMPLERS:
            raise InvalidInput(f"OTEL_TRACES_SAMPLER {name!r} is not one of {', '.join(SAMPLERS)}")
        ratio = 1.0
        if name.endswith("traceidratio"):
            try:
                ratio = float(arg) if arg not in (None, "") else 1.0
            except ValueError:
                raise InvalidInput(f"OTEL_TRACES_SAMPLER_ARG {arg!r} is not a ratio") from None
            if not 0.0 <= ratio <= 1.0:
                raise InvalidInput(f"OTEL_TRACES_SAMPLER_ARG {arg!r} is not between 0 and 1")
        elif name.endswith("always_off"):
            ratio = 0.0
        self.name, self.ratio = name, ratio
        self.parent_based = name.startswith("parentbased_")
        self._bound = int(ratio * (1 << 64))

    def sample(self, parent: tuple[str, str, bool] | None) -> bool:
        """Whether a request with this parsed ``traceparent`` (or none) is recorded."""
        if parent is not None:
            if self.parent_based:
                return parent[2]
            return int(parent[0][16:], 16) < self._bound  # the trace id's low 64 bits
        return random.getrandbits(64) < self._bound
