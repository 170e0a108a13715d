import pytest

from modelport.errors import InvalidReference
from modelport.uri import ModelRef


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", ModelRef("digits")),
        ("digits:3", ModelRef("digits", version=3)),
        ("digits@production", ModelRef("digits", alias="production")),
        ("my.model_v2-b", ModelRef("my.model_v2-b")),
        ("9lives:12", ModelRef("9lives", version=12)),
    ],
)
def test_parse_round_trips(text: str, expected: ModelRef) -> None:
    assert ModelRef.parse(text) == expected
    assert str(ModelRef.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("a\x07b", "control characters"),
        ("x" * 129, "129 characters"),
        ("m:0", "positive integer"),
        ("m:1.5", "positive integer"),
        ("m:", "positive integer"),
        ("m@", "empty alias"),
        ("m@7up", "start with a letter"),
        ("@prod", "non-empty"),
        ("..", "not valid"),
        ("m:١", "positive integer"),
    ],
)
def test_malformed_references_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        ModelRef.parse(text)
