"""What an OpenAI completion request asks, checked and turned into ``SamplingParams``.

    n = check_request(request, engine, prompts)     # BadParam (a 400 naming the field) if not
    params = sampling_params(request, choice=0)     # stop, seed, logprobs, response_format

Checked once per request, before any sequence is submitted: a bad field never starts a
generation. ``seed`` is offset by the choice index, so ``n`` seeded choices differ.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import InvalidInput
from modelport.generation.base import MAX_LOGPROBS, SamplingParams

MAX_N = 8
MAX_STOPS = 4
MAX_COMPLETION_LOGPROBS = 5  # the legacy completions API's limit


class BadParam(InvalidInput):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def check_request(request: dict[str, Any], engine: Any, prompts: list[list[int]]) -> int:
    """Validate what does not depend on the prompt's content; the n of choices per prompt."""
    if request.get("tools") not in (None, []):
        raise BadParam("tools", "'tools' is not supported by this server")
    n = request.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise BadParam("n", f"'n' must be an integer between 1 and {MAX_N}, got {n!r}")
    max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
    longest = max(len(p) for p in prompts)
    if max_tokens is None:
        max_tokens = max(engine.context - longest, 1)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadParam("max_tokens", f"'max_tokens' must be an integer >= 1, got {max_tokens!r}")
    try:
        engine.check(longest, max_tokens)
    except InvalidInput as exc:
        raise BadParam("messages" if "messages" in request else "prompt", exc.message) from None
    request["_max_tokens"] = max_tokens
    request["_logprobs"] = _logprobs(request, chat="messages" in request)
    request["_grammar"] = _grammar(request.get("response_format"))
    sampling_params(request, 0)
    return n


def sampling_params(request: dict[str, Any], choice: int) -> SamplingParams:
    stops = _stops(request.get("stop"))
    seed = request.get("seed")
    for name in ("temperature", "top_p"):
        value = request.get(name, 1.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BadParam(name, f"'{name}' must be a number")
    try:
        return SamplingParams(
            max_tokens=request["_max_tokens"],
            temperature=float(request.get("temperature", 1.0)),
            top_p=float(request.get("top_p", 1.0)),
            stop=stops,
            seed=seed + choice if isinstance(seed, int) and not isinstance(seed, bool) else seed,
            logprobs=request.get("_logprobs"),
            grammar=request.get("_grammar"),
        )
    except InvalidInput as exc:
        fields = ("max_tokens", "temperature", "top_p", "seed")
        param = next((p for p in fields if exc.message.startswith(p)), "")
        raise BadParam(param, exc.message) from None


def _stops(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stops: tuple[str, ...] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise BadParam("stop", "'stop' must be a string or an array of strings")
    if len(stops) > MAX_STOPS:
        raise BadParam("stop", f"'stop' takes at most {MAX_STOPS} strings")
    return stops


def _logprobs(request: dict[str, Any], chat: bool) -> int | None:
    """Alternatives per token, or None when no log-probabilities are asked. Chat asks with
    ``logprobs: true`` and ``top_logprobs: 0..20``; completions with ``logprobs: 0..5``."""
    asked = request.get("logprobs")
    if not chat:
        if asked is None:
            return None
        if not _int_in(asked, MAX_COMPLETION_LOGPROBS):
            raise BadParam(
                "logprobs",
                f"'logprobs' must be an integer between 0 and {MAX_COMPLETION_LOGPROBS}, "
                f"got {asked!r}",
            )
        return asked
    if asked not in (None, True, False):
        raise BadParam("logprobs", f"'logprobs' must be a boolean, got {asked!r}")
    top = request.get("top_logprobs")
    if top is not None and not _int_in(top, MAX_LOGPROBS):
        raise BadParam(
            "top_logprobs",
            f"'top_logprobs' must be an integer between 0 and {MAX_LOGPROBS}, got {top!r}",
        )
    if top is not None and asked is not True:
        raise BadParam("top_logprobs", "'top_logprobs' needs 'logprobs' set to true")
    return (top or 0) if asked else None


def _int_in(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


def _grammar(response_format: Any) -> str | None:
    """The grammar a ``response_format`` asks for: none for text, any JSON object for
    ``json_object``, JSON valid under the schema for ``json_schema``."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    from modelport.generation.constraints import json_grammar

    try:
        if kind == "json_object":
            return json_grammar(None)
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or "schema" not in spec:
                raise InvalidInput("'json_schema' must be an object with a 'schema'")
            return json_grammar(spec["schema"])
    except InvalidInput as exc:
        raise BadParam("response_format", exc.message) from None
    raise BadParam(
        "response_format",
        '\'response_format\' must be {"type": "text"}, {"type": "json_object"} or '
        '{"type": "json_schema", "json_schema": {"schema": ...}}',
    )
