"""Checks on what users attach to a version, and small text helpers for messages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modelport.errors import InvalidInput
from modelport.uri import validate_name

MAX_TAG_LENGTH = 1024


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    clean = {}
    for key, value in metrics.items():
        validate_name(str(key), "metric name")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"metric {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InvalidInput(f"metric {key!r} must be finite, got {value!r}")
        clean[str(key)] = number
    return clean


def check_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    clean = {}
    for key, value in tags.items():
        validate_name(str(key), "tag name")
        text = str(value)
        if len(text) > MAX_TAG_LENGTH:
            raise InvalidInput(f"tag {key!r} is longer than {MAX_TAG_LENGTH} characters")
        clean[str(key)] = text
    return clean


def number_ranges(numbers: list[int]) -> str:
    parts, start = [], numbers[0]
    for prev, cur in zip(numbers, numbers[1:] + [None], strict=True):
        if cur != prev + 1 if cur is not None else True:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)
