"""Chat templates render in a sandbox; bad messages are a clear 400."""

from __future__ import annotations

import pytest

from modelport.errors import InvalidInput
from modelport.generation.chat import check_messages, render

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_template_renders_with_generation_prompt() -> None:
    text = render(CHATML, check_messages([{"role": "user", "content": "Hi"}]))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_text_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert check_messages([{"role": "user", "content": parts}])[0]["content"] == "ab"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([], "non-empty"),
        ("hi", "non-empty"),
        ([{"content": "x"}], "no 'role'"),
        ([{"role": "wizard", "content": "x"}], "not one of"),
        ([{"role": "user", "content": 3}], "must be a string"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "text parts"),
        (["x"], "must be an object"),
    ],
)
def test_malformed_messages_are_refused(messages, needle) -> None:
    with pytest.raises(InvalidInput, match=needle):
        check_messages(messages)


def test_template_cannot_reach_python_internals() -> None:
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InvalidInput):
        render(evil, [{"role": "user", "content": "x"}])


def test_raise_exception_in_template_is_a_client_error() -> None:
    strict = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
    with pytest.raises(InvalidInput, match="user first"):
        render(strict, [{"role": "assistant", "content": "x"}])


def test_no_template_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no chat template"):
        render(None, [{"role": "user", "content": "x"}])
