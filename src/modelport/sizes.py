"""Sizes in bytes from what people write: ``512MiB``, ``2G``, ``1.5 GB``.

parse_size("1GiB") == 1 << 30
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6,
          "mib": 1 << 20, "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}  # fmt: skip


def parse_size(value: int | str) -> int:
    """Bytes from ``1073741824``, ``"512MiB"``, ``"2G"`` or ``"1.5 GB"``.

    parse_size("1GiB") == 1 << 30
    """
    from modelport.errors import InvalidInput

    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in _UNITS:
            raise InvalidInput(f"{value!r} is not a size: use bytes or a unit, as in 512MiB or 2GB")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size < 1 << 20:
        raise InvalidInput(f"a memory budget of {value!r} is too small: give at least 1MiB")
    return size
