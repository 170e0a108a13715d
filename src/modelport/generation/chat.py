"""A model's own chat template, rendered with sandboxed Jinja.

    prompt = render(template, [{"role": "user", "content": "Hi"}], bos="<s>", eos="</s>")

Templates come from the model (GGUF metadata or tokenizer_config.json), never from a default:
each architecture marks turns its own way, and a wrong template makes a model answer with an
end of turn and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from modelport.errors import InvalidInput

ROLES = ("system", "user", "assistant", "tool", "developer")


class TemplateError(InvalidInput):
    pass


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise TemplateError(f"the chat template refused the messages: {message}")

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now(UTC).strftime(fmt)
    try:
        return env.from_string(template)
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"the model's chat template does not parse: {exc}") from None


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI-style messages: a non-empty list of {role, content}; content a string or parts."""
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("'messages' must be a non-empty array")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidInput(f"messages[{i}] must be an object")
        role = message.get("role")
        if role is None:
            raise InvalidInput(f"messages[{i}] has no 'role'")
        if role not in ROLES:
            raise InvalidInput(f"messages[{i}].role {role!r} is not one of {', '.join(ROLES)}")
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, Mapping) or part.get("type") != "text":
                    raise InvalidInput(f"messages[{i}].content parts must be text parts")
                if not isinstance(part.get("text"), str):
                    raise InvalidInput(f"messages[{i}].content text parts need a 'text' string")
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None and role == "assistant":
            content = ""
        elif not isinstance(content, str):
            raise InvalidInput(
                f"messages[{i}].content must be a string or an array of text parts, "
                f"got {type(content).__name__}"
            )
        clean.append({"role": role, "content": content})
    return clean


def render(
    template: str | None, messages: Sequence[Mapping[str, Any]], bos: str = "", eos: str = ""
) -> str:
    if not template:
        raise InvalidInput("this model has no chat template; use /v1/completions with a prompt")
    try:
        return _compile(template).render(
            messages=list(messages), add_generation_prompt=True, bos_token=bos, eos_token=eos
        )
    except InvalidInput:
        raise
    except Exception as exc:  # a template bug on these messages: the client's 400, not a 500
        raise InvalidInput(f"the chat template failed on these messages: {exc}") from None
