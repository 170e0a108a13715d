"""What every command shares: the console, settings, the registry and JSON output."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.settings import Settings

# Pipes and logs get every value in full: no terminal to fit, so lines are as wide as they need.
_WIDTH = None if sys.stdout.isatty() else 100_000
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


class State:
    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {}
        self._settings: Settings | None = None
        self._registry: Registry | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from modelport.settings import Settings

            self._settings = Settings(**self.overrides)
        return self._settings

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from modelport.registry import Registry

            self._registry = Registry(self.settings)
        return self._registry


state = State()


def registry() -> Registry:
    return state.registry


def option_defaults(command: Any, values: dict[str, str], name: str) -> dict[str, Any]:
    """``values`` (from ``MODELPORT_<NAME>__<OPTION>`` variables) as the default map of a
    command's options; a variable naming no option is an error, not silently ignored."""
    from modelport.errors import InvalidInput

    params = {p.name: p for p in command.params if getattr(p, "param_type_name", "") == "option"}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        param = params.get(key.replace("-", "_"))
        if param is None:
            known = ", ".join(sorted(k.upper() for k in params))
            raise InvalidInput(f"MODELPORT_{name.upper()}__{key.upper()} names no option of "
                               f"'modelport {name}' (options: {known})")  # fmt: skip
        defaults[param.name] = [v.strip() for v in value.split(",")] if param.multiple else value
    return defaults


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__}")


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    from modelport.errors import InvalidInput

    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} {pair!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def when(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
