"""OpenAI's stop semantics on /generate's generations: the text ends before the stop sequence, and a
stream never sends characters that turn out to begin it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.sampling import StoppingCriteria
from service.tasks.generation.openai import StopTrimmer, held_back, strip_stop


def test_held_back_is_the_longest_suffix_that_may_begin_a_stop() -> None:
    assert held_back("abc", ["\n\n"]) == 0
    assert held_back("abc\n", ["\n\n"]) == 1
    assert held_back("xEN", ["END", "ENOUGH"]) == 2
    assert held_back("xENOUG", ["END", "ENOUGH"]) == 5
    assert held_back("E", ["ENOUGH"]) == 1
    assert held_back("abc", []) == 0


def test_strip_stop_removes_the_longest_matching_stop() -> None:
    assert strip_stop("to be\n", ["\n"]) == "to be"
    assert strip_stop("to be or", ["or", " or"]) == "to be"
    assert strip_stop("to be", ["\n"]) == "to be"


def test_the_trimmer_keeps_choices_apart() -> None:
    trimmer = StopTrimmer(["\n\n"])
    assert trimmer.release(0, "a\n", None) == "a"
    assert trimmer.release(1, "b", None) == "b"
    assert trimmer.release(0, "b", None) == "\nb"
    assert trimmer.release(1, "\n", None) == ""
    assert trimmer.release(1, "\n", "stop") == ""
    assert trimmer.release(0, "\n", "length") == "\n"


@given(
    text=st.text(alphabet="ab\n", max_size=40),
    stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=1, max_value=5), max_size=40),
)
def test_a_streamed_choice_is_the_text_before_the_stop(text: str, stops: list[str], cuts: list[int]) -> None:
    """The scheduler's stopping rule decides where the generation ends; the chunks it sends, trimmed,
    add up to the text without its stop sequence, whatever the chunking."""
    criteria = StoppingCriteria(max_new_tokens=max(len(text), 1), stop=tuple(stops))
    generated, reason = "", None
    for ch in text or "a":
        generated += ch
        reason = criteria(ch)
        if reason:
            break
    assert reason is not None
    chunks, start = [], 0
    for cut in [*cuts, len(generated)]:
        if start >= len(generated):
            break
        chunks.append(generated[start : start + cut])
        start += cut
    if start < len(generated):
        chunks.append(generated[start:])
    trimmer = StopTrimmer(stops)
    sent = "".join(
        trimmer.release(0, chunk, reason if i == len(chunks) - 1 else None) for i, chunk in enumerate(chunks)
    )
    assert sent == (strip_stop(generated, stops) if reason == "stop" else generated)
