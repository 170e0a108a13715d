"""Model references: ``name`` (latest), ``name:3`` (a version), ``name@production`` (an alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelport.errors import InvalidReference

MAX_NAME_LENGTH = 128
MAX_VERSION = 2**31 - 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")


def _printable(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def validate_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not name:
        raise InvalidReference(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidReference(
            f"{what} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidReference(f"{what} {_printable(name)!r} contains control characters")
    if "/" in name or "\\" in name:
        raise InvalidReference(f"{what} {name!r} contains a path separator")
    if name in {".", ".."} or not _NAME.fullmatch(name):
        raise InvalidReference(
            f"{what} {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def validate_alias(alias: str) -> str:
    validate_name(alias, "alias")
    if not _ALIAS.fullmatch(alias):
        raise InvalidReference(f"alias {alias!r} is not valid: it must start with a letter")
    return alias


def parse_version(text: str | int) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.isascii() and text.isdigit():
        value = int(text)
    else:
        raise InvalidReference(f"version {text!r} is not a positive integer")
    if value < 1:
        raise InvalidReference(f"version {value} is not a positive integer")
    if value > MAX_VERSION:
        raise InvalidReference(f"version {value} is larger than any version can be")
    return value


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str | ModelRef) -> ModelRef:
        if isinstance(text, ModelRef):
            return text
        if not isinstance(text, str) or not text:
            raise InvalidReference("a model reference must be a non-empty string")
        if "@" in text:
            name, _, alias = text.partition("@")
            if not alias:
                raise InvalidReference(f"reference {_printable(text)!r} has an empty alias")
            return cls(validate_name(name), alias=validate_alias(alias))
        if ":" in text:
            name, _, version = text.partition(":")
            return cls(validate_name(name), version=parse_version(version))
        return cls(validate_name(text))

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name
