"""Stop strings never leak into a stream, however the text is cut into tokens."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.generation.stops import StopFilter

ALPHABET = st.sampled_from("ab\n:XY")


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    edges = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(ALPHABET, max_size=40),
    stops=st.lists(st.text(ALPHABET, min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 60), max_size=20),
)
def test_no_stop_string_leaks_under_any_chunking(text, stops, cuts) -> None:
    f = StopFilter(stops)
    emitted, stopped = [], False
    for chunk in _chunks(text, cuts):
        out, stopped = f.feed(chunk)
        emitted.append(out)
        streamed = "".join(emitted)
        assert not any(s in streamed for s in stops), (streamed, stops)
        if stopped:
            break
    streamed = "".join(emitted)
    hits = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    if hits:  # cut before the stop string that completes first
        assert stopped
        assert streamed == text[: min(hits)[1]]
    else:
        assert not stopped
        assert streamed + f.flush() == text


def test_held_text_is_released_when_it_cannot_be_a_stop() -> None:
    f = StopFilter(["</end>"])
    assert f.feed("hello </e") == ("hello ", False)
    assert f.feed("x") == ("</ex", False)
    assert f.feed("</end> tail") == ("", True)


def test_no_stops_passes_text_through() -> None:
    assert StopFilter([]).feed("abc") == ("abc", False)
    assert StopFilter([""]).feed("abc") == ("abc", False)
