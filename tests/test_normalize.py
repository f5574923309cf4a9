"""Text normalisation before synthesis: what it removes, what it keeps, and the chunker applying it."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.text import Chunker, normalize
from streamer.text.normalize import ELONGATION


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("\u0640" * 50, ""),
        ("كـتـاب", "كتاب"),
        ("a\x00b", "a b"),
        ("bell\x07 and\x1b[31m red", "bell  and [31m red"),
        ("next\x85line\x9f", "next line "),
        ("lone \ud800 surrogate", "lone   surrogate"),
        ("Wow!!!!!!!!", "Wow!"),
        ("Wow!!!", "Wow!!!"),
        ("Wait...", "Wait..."),
        ("----------", "-"),
        ("a ---- b", "a - b"),
        ("____", "_"),
        ("😀😀😀😀😀", "😀"),
        ("?!?!?!", "?!?!?!"),  # not one character repeated: left alone (the audio bound covers it)
        ("1000000000", "1000000000"),
        ("aaaaaaaaaa", "aaaaaaaaaa"),
        ("tab\there\nnew\rline", "tab\there\nnew\rline"),
        ("a" + "\u0301" * 6, "a\u0301"),  # a combining mark repeated
        ("", ""),
    ],
)
def test_normalize(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


_ANY_TEXT = st.text(
    st.one_of(
        st.characters(),  # any code point but surrogates
        st.sampled_from("!-_.…😀\u0640\u07fa\x00\x07\x85\ud800\u0301 \n"),  # what it acts on, often
    ),
    max_size=80,
)


def _kept(text: str) -> list[str]:
    return [ch for ch in text if ch.isalnum() and ch not in ELONGATION]


@given(_ANY_TEXT)
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(_ANY_TEXT)
def test_normalize_never_lengthens(text: str) -> None:
    assert len(normalize(text)) <= len(text)


@given(_ANY_TEXT)
def test_normalize_leaves_no_control_character_or_surrogate(text: str) -> None:
    for ch in normalize(text):
        assert unicodedata.category(ch) not in ("Cc", "Cs") or ch in "\t\n\r"


@given(_ANY_TEXT)
def test_normalize_keeps_every_letter_and_digit_in_order(text: str) -> None:
    assert _kept(normalize(text)) == _kept(text)


@given(_ANY_TEXT)
def test_normalize_leaves_no_run_of_four_of_one_symbol(text: str) -> None:
    out = normalize(text)
    for i in range(len(out) - 3):
        ch = out[i]
        assert ch.isalnum() or ch.isspace() or out[i : i + 4] != ch * 4


def test_the_chunker_speaks_normalised_text_and_keeps_offsets_into_what_was_sent() -> None:
    chunker = Chunker()
    fed = "Hi\x00 there!!!!!!!! " + "\u0640" * 50 + ". Bye -------- now."
    chunks = chunker.push(fed) + chunker.flush()
    assert [c.text for c in chunks] == ["Hi  there!", "Bye - now."]
    first, last = chunks
    assert fed[first.start : first.end] == "Hi\x00 there!!!!!!!!"
    assert fed[last.start : last.end] == "Bye -------- now."
    assert chunker.offset == len(fed)


def test_a_chunk_with_nothing_speakable_after_normalisation_is_no_chunk() -> None:
    chunker = Chunker()
    assert chunker.push("\u0640" * 50 + "\n") == []
    assert chunker.flush() == []
    assert chunker.push("\x00\x00\x00") + chunker.flush() == []
