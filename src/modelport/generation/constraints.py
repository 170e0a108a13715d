"""Constrained output: a response format turned into the GBNF grammar the scheduler follows.

    grammar = json_grammar(None)                                   # any JSON object
    grammar = json_grammar({"type": "object", "properties": {"n": {"type": "integer"}},
                            "required": ["n"]})                    # output validates
    SamplingParams(max_tokens=64, grammar=grammar)

A schema is checked first (``jsonschema``'s meta-schema when installed), so an invalid one is
the client's error, not a grammar that never matches. Keywords a grammar cannot enforce
(numeric bounds, ``uniqueItems``, ``not``, ...) are refused rather than silently ignored: what
is generated under a schema always validates against it.
"""

from __future__ import annotations

import json
from typing import Any

from modelport.errors import InvalidInput, MissingDependency


def json_grammar(schema: dict[str, Any] | None) -> str:
    """GBNF for a JSON object (``schema`` None) or for JSON valid under ``schema``."""
    try:
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf
    except ImportError:
        raise MissingDependency("llama-cpp-python", "llm") from None
    if schema is None:
        return JSON_GBNF
    check_schema(schema)
    unenforced = sorted(set(_keywords(schema)) & UNENFORCED)
    if unenforced:
        raise InvalidInput(
            f"the JSON schema uses {', '.join(unenforced)}, which constrained decoding cannot "
            "enforce; remove them"
        )
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except (
        ValueError,
        KeyError,
        TypeError,
        AssertionError,
        NotImplementedError,
        RecursionError,
    ) as exc:
        raise InvalidInput(f"the JSON schema cannot be followed: {exc}") from None
    # the converter's string characters include raw control characters, which JSON forbids
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


UNENFORCED = frozenset(
    "minimum maximum exclusiveMinimum exclusiveMaximum multipleOf uniqueItems not if then "
    "else dependentRequired dependentSchemas minProperties maxProperties patternProperties "
    "propertyNames contains minContains maxContains unevaluatedProperties "
    "unevaluatedItems".split()
)
_MAPS = ("properties", "$defs", "definitions")  # name -> subschema
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")  # subschemas
_ONE = ("items", "additionalProperties")  # a subschema (or a list, or a boolean)


def _keywords(schema: Any) -> list[str]:
    """Every keyword used in ``schema`` and its subschemas (not property names)."""
    if not isinstance(schema, dict):
        return []
    found = list(schema)
    children: list[Any] = []
    for key in _MAPS:
        if isinstance(schema.get(key), dict):
            children += schema[key].values()
    for key in _LISTS + _ONE:
        value = schema.get(key)
        children += value if isinstance(value, list) else [value]
    for child in children:
        found += _keywords(child)
    return found


def check_schema(schema: Any) -> None:
    if not isinstance(schema, dict):
        raise InvalidInput("the JSON schema must be an object")
    try:
        from jsonschema import validators
        from jsonschema.exceptions import SchemaError
    except ImportError:  # the converter below still refuses what it cannot follow
        return
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the root"
        raise InvalidInput(f"the JSON schema is invalid at {where}: {exc.message}") from None
