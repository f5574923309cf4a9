"""The chunker: boundaries, first chunks, offsets, turns, idle flushes, barge-in, live limits and speed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.text import Chunk, Chunker, normalize
from streamer.text.normalize import ELONGATION

TIMESCALE = float(os.environ.get("STREAMER_TEST_TIMESCALE", "1"))

# Pushed first in the sentence tables so that the first-chunk rule is out of the way.
PREAMBLE = "Okay, here we go now. "
URL = "https://example.com/a.b?c=d"


def run(pieces: Iterable[str], chunker: Chunker | None = None, flush: bool = True) -> list[Chunk]:
    chunker = chunker or Chunker()
    chunks = [chunk for piece in pieces for chunk in chunker.push(piece)]
    return chunks + chunker.flush() if flush else chunks


def texts(chunks: Iterable[Chunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if size else [text]


# --- sentence boundaries (later chunks: one sentence each) ----------------------------------------

SENTENCES = [
    # abbreviations never end a sentence
    ("I met Dr. Smith today. He was kind.", ["I met Dr. Smith today.", "He was kind."]),
    (
        "Mr. Brown and Mrs. Brown came. Ms. Green did not.",
        ["Mr. Brown and Mrs. Brown came.", "Ms. Green did not."],
    ),
    ("She lives on Baker St. Near the park. Yes.", ["She lives on Baker St. Near the park.", "Yes."]),
    ("Bring fruit, e.g. Apples or pears. Also bread.", ["Bring fruit, e.g. Apples or pears.", "Also bread."]),
    ("Use one tool, i.e. The hammer. Fine.", ["Use one tool, i.e. The hammer.", "Fine."]),
    ("We need eggs, milk, etc. And bread. Thanks.", ["We need eggs, milk, etc. And bread.", "Thanks."]),
    ("It was Lakers vs. Celtics tonight. Great game.", ["It was Lakers vs. Celtics tonight.", "Great game."]),
    ("The U.S. Army is large. Really.", ["The U.S. Army is large.", "Really."]),
    ("We start at 9 a.m. Sharp. Do not be late.", ["We start at 9 a.m. Sharp.", "Do not be late."]),
    ("It ends at 5 p.m. Eastern. Bye.", ["It ends at 5 p.m. Eastern.", "Bye."]),
    ("See No. 5 on the list. Thanks.", ["See No. 5 on the list.", "Thanks."]),
    ("See Fig. 3 for details. Thanks.", ["See Fig. 3 for details.", "Thanks."]),
    ("Martin Luther King Jr. Was a leader. Yes.", ["Martin Luther King Jr. Was a leader.", "Yes."]),
    ("John Smith Sr. Owns it. Yes.", ["John Smith Sr. Owns it.", "Yes."]),
    ("Ask Prof. Jones about it. Yes.", ["Ask Prof. Jones about it.", "Yes."]),
    ("Acme Inc. Reported profits. Wow.", ["Acme Inc. Reported profits.", "Wow."]),
    ("Acme Ltd. Is based here. Yes.", ["Acme Ltd. Is based here.", "Yes."]),
    ("The book by J. R. Tolkien is long. Read it.", ["The book by J. R. Tolkien is long.", "Read it."]),
    # "No." is an abbreviation only before a number, and "I" is no initial
    ("No. I disagree with that. Fine.", ["No.", "I disagree with that.", "Fine."]),
    ("So did I. Then we left.", ["So did I.", "Then we left."]),
    # numbers and times
    ("Pi is roughly 3.14 today. Yes.", ["Pi is roughly 3.14 today.", "Yes."]),
    ("It costs 1,000.50 dollars. Yes.", ["It costs 1,000.50 dollars.", "Yes."]),
    ("We meet at 10:30. Then we eat.", ["We meet at 10:30.", "Then we eat."]),
    ("In 1999. The year ended.", ["In 1999.", "The year ended."]),
    # URLs and e-mail addresses
    (f"Visit {URL}. Then leave.", [f"Visit {URL}.", "Then leave."]),
    (f"See {URL} for more. Bye.", [f"See {URL} for more.", "Bye."]),
    ("Go to www.x.org. It is good.", ["Go to www.x.org.", "It is good."]),
    ("Mail a.b@c.com. Thanks.", ["Mail a.b@c.com.", "Thanks."]),
    # ellipsis: a pause inside a sentence, an end before a capital
    ("I was thinking... maybe not. Okay.", ["I was thinking... maybe not.", "Okay."]),
    ("Wait... What happened? Nothing.", ["Wait...", "What happened?", "Nothing."]),
    ("Well… I guess so. Sure.", ["Well…", "I guess so.", "Sure."]),
    # a lower-case word after a dot does not start a sentence
    ("Set the value to config. then run it. Done.", ["Set the value to config. then run it.", "Done."]),
    # closing quotes and brackets stay with their sentence; opening ones start the next
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ('"Stop!" she said. Then he left.', ['"Stop!" she said.', "Then he left."]),
    ("(It was late.) We went home.", ["(It was late.)", "We went home."]),
    ('She asked. "Why?" Nobody knew.', ["She asked.", '"Why?"', "Nobody knew."]),
    ("Really?! Yes! Of course.", ["Really?!", "Yes!", "Of course."]),
    # CJK full stops need no space after them
    ("你好。我是学生！你呢？", ["你好。", "我是学生！", "你呢？"]),
    # line breaks and blank lines
    ("First line\nSecond line\n\nThird paragraph", ["First line", "Second line", "Third paragraph"]),
    ("Line one.\r\nLine two.", ["Line one.", "Line two."]),
    ("Items:\n- one\n- two", ["Items:", "- one", "- two"]),
    ("Dr.\nSmith", ["Dr.", "Smith"]),
    # a number opening a line is a list item, not a sentence of its own
    ("Steps:\n1. Buy milk.\n  2. Go home. Rest.", ["Steps:", "1. Buy milk.", "2. Go home.", "Rest."]),
    ("Take step 1. Then stop.", ["Take step 1.", "Then stop."]),
]


@pytest.mark.parametrize("size", [0, 1, 2, 3], ids=["whole", "by1", "by2", "by3"])
@pytest.mark.parametrize(("text", "expected"), SENTENCES)
def test_sentences(text: str, expected: list[str], size: int) -> None:
    chunks = run(pieces_of(PREAMBLE + text, size))
    assert texts(chunks) == ["Okay, here we go now.", *expected]
    assert [chunk.first for chunk in chunks] == [True] + [False] * len(expected)


# --- the first chunk of a turn --------------------------------------------------------------------

FIRST_CHUNKS = [
    # the first boundary at or after min_first_chunk_chars (12) wins; exactly 12 counts
    (
        "Hello there, how are you doing today? I am fine.",
        ["Hello there,", "how are you doing today?", "I am fine."],
    ),
    # a tiny "Hi," is not worth a chunk when a boundary is close
    (
        "Hi, how are you doing today, my friend? Good.",
        ["Hi, how are you doing today,", "my friend?", "Good."],
    ),
    # "Well. I suppose we could try that," is past the limit (30): the whole short sentence goes
    (
        "Well. I suppose we could try that, if you like.",
        ["Well.", "I suppose we could try that, if you like."],
    ),
    ("Note: this works; that does not.", ["Note: this works;", "that does not."]),
    ("I went there — and it was closed.", ["I went there —", "and it was closed."]),
    ("Remember, pages 10–20 matter.", ["Remember, pages 10–20 matter."]),
    # no boundary within first_chunk_chars (30): the last complete word before the limit
    (
        "one two three four five six seven eight nine ten",
        # 27 characters; with " seven" 33
        ["one two three four five six", "seven eight nine ten"],
    ),
    # ... but rather just before a word that starts a phrase, if one is in reach
    (
        "It is twelve degrees and cloudy in Amsterdam right now, with rain.",
        ["It is twelve degrees", "and cloudy in Amsterdam right now, with rain."],
    ),
    (
        "The living room lights are now on and set to fifty percent.",
        ["The living room lights are now", "on and set to fifty percent."],
    ),
    # a phrase that would leave a first chunk under min_first_chunk_chars (12) is not a cut
    (
        "I went to the shop and bought some bread and milk today.",
        ["I went to the shop", "and bought some bread and milk today."],
    ),
    ("Go to the big old barn behind the house today.", ["Go to the big old barn", "behind the house today."]),
    # ... unless a whole sentence ends before the limit: never cut a sentence when one is complete
    (
        "Yes. I think that you are right about this whole thing and more than that.",
        ["Yes.", "I think that you are right about this whole thing and more than that."],
    ),
    # a line break ends even a very short first chunk
    ("Sure!\n\nHere is the plan for today, in short.", ["Sure!", "Here is the plan for today, in short."]),
    ("Title\nBody text, with a comma.", ["Title", "Body text, with a comma."]),
    # a first word longer than the limit ends the first chunk by itself
    (f"https://example.com/{'a' * 80} is the link.", [f"https://example.com/{'a' * 80}", "is the link."]),
    # short turns go out whole at the flush
    ("Okay.", ["Okay."]),
    ("Hi. Bye.", ["Hi. Bye."]),
    ("1. Buy some milk and bread.\n2. Go home.", ["1. Buy some milk and bread.", "2. Go home."]),
    ("  \n  ", []),
]


@pytest.mark.parametrize("size", [0, 1, 3], ids=["whole", "by1", "by3"])
@pytest.mark.parametrize(("text", "expected"), FIRST_CHUNKS)
def test_first_chunk(text: str, expected: list[str], size: int) -> None:
    chunks = run(pieces_of(text, size))
    assert texts(chunks) == expected
    assert [chunk.first for chunk in chunks] == [index == 0 for index in range(len(expected))]


def test_first_chunk_limit_is_inclusive() -> None:
    at_limit = "a" * 10 + " " + "b" * 18 + ","  # the comma is the 30th character
    assert texts(run([at_limit + " more words follow here"], flush=False)) == [at_limit]
    past_limit = "a" * 10 + " " + "b" * 19 + ","  # the 31st: too late, the last complete word goes instead
    assert texts(run([past_limit + " more words follow here"], flush=False)) == ["a" * 10]


def test_phrase_cut_waits_for_the_word_after_it() -> None:
    chunker = Chunker()
    # 45 characters, past the limit and its slack; but the last word might still be followed by more
    # letters, and a cut never depends on how the text was split
    assert chunker.push("It is twelve degrees and uncharacteristically") == []
    # ... it is whole now and starts no phrase: the cut goes before "and"
    assert texts(chunker.push(" cold")) == ["It is twelve degrees"]


@pytest.mark.parametrize("size", [0, 1, 3], ids=["whole", "by1", "by3"])
def test_a_chunk_says_whether_speech_pauses_where_it_ends(size: int) -> None:
    text = "It is twelve degrees and cloudy in Amsterdam right now, with rain. " + "word " * 60 + "end."
    chunks = run(pieces_of(text, size), Chunker(max_chunk_chars=120))
    # a phrase cut, a sentence, two cuts of a sentence over the limit, the end
    assert [c.pause for c in chunks] == [False, True, False, False, True]
    assert all(c.pause for c in run(pieces_of("Hello there, how are you doing today? I am fine.", size)))


def test_a_sentence_ending_just_past_the_limit_goes_whole() -> None:
    chunker = Chunker()  # first_chunk_chars 30
    assert chunker.push("The new connection owns the session.") == []  # "." might be "session.js"
    assert texts(chunker.push(" And")) == ["The new connection owns the session."]
    # 12 characters past the limit is the most: this one is cut
    assert texts(run(["The new connection owns the whole session now."])) == [
        "The new connection owns the",
        "whole session now.",
    ]


def test_first_chunk_goes_as_soon_as_its_boundary_is_certain() -> None:
    chunker = Chunker()
    assert chunker.push("Hello there,") == []  # "," might still be "1,000"
    assert texts(chunker.push(" how")) == ["Hello there,"]


def test_sentence_goes_as_soon_as_the_next_one_starts() -> None:
    chunker = Chunker()
    assert texts(chunker.push(PREAMBLE + "How")) == ["Okay, here we go now."]
    assert chunker.push(" are you? ") == []
    assert texts(chunker.push("I")) == ["How are you?"]


def test_line_break_goes_at_once() -> None:
    chunker = Chunker()
    assert texts(chunker.push(PREAMBLE + "So")) == ["Okay, here we go now."]
    assert texts(chunker.push(" a line of text\n")) == ["So a line of text"]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["I met Dr.", " ", "Smith at home. ", "Then"], "I met Dr. Smith at home."),
        (["Pi is 3.", "14 exactly. ", "Next"], "Pi is 3.14 exactly."),
        (["It is 10:", "30 now. ", "Next"], "It is 10:30 now."),
        (["Visit https:", "//example.", "com/a.", "b now. ", "Next"], "Visit https://example.com/a.b now."),
        (["Wait.", '"', " ", "Next"], 'Wait."'),
    ],
)
def test_waits_for_what_follows_the_dot(pieces: list[str], expected: str) -> None:
    chunker = Chunker()
    assert texts(chunker.push(PREAMBLE + "Go. ")) == ["Okay, here we go now."]
    emitted = [chunk for piece in pieces for chunk in chunker.push(piece)]
    assert texts(emitted) == ["Go.", expected]


# --- sentences longer than max_chunk_chars --------------------------------------------------------


def test_long_sentence_splits_at_last_clause_before_limit() -> None:
    chunker = Chunker(max_chunk_chars=50)
    text = "This is long, it has a clause here, and another one that goes on past the limit of fifty."
    assert texts(run([PREAMBLE + text], chunker))[1:] == [
        "This is long, it has a clause here,",
        "and another one that goes on past the limit of",
        "fifty.",
    ]


def test_long_sentence_without_clause_splits_at_last_word() -> None:
    words = " ".join(f"Word{i}" for i in range(30)) + "."
    chunks = run([PREAMBLE + words], Chunker(max_chunk_chars=50))[1:]
    assert all(len(chunk.text) <= 50 for chunk in chunks)
    assert " ".join(texts(chunks)) == words  # every cut fell between words


def test_word_longer_than_max_is_cut_hard() -> None:
    long_url = "https://example.com/" + "a" * 380
    chunks = run([PREAMBLE + f"See {long_url} now."])
    # The last word boundary before the limit comes first; only then the word itself is cut at the limit.
    assert texts(chunks)[1:] == ["See", long_url[:250], long_url[250:] + " now."]
    alone = run([long_url])
    assert texts(alone) == [long_url[:250], long_url[250:]]


def test_numbers_are_not_clause_boundaries_when_splitting() -> None:
    text = "It costs about 1,000.50 dollars at 10:30 or so, give or take some cents."
    chunks = run([PREAMBLE + text], Chunker(max_chunk_chars=30))
    assert any("1,000.50" in chunk.text for chunk in chunks)
    assert any("10:30" in chunk.text for chunk in chunks)
    assert all(len(chunk.text) <= 30 for chunk in chunks)


# --- punctuation-only pieces and offsets ----------------------------------------------------------


def test_punctuation_only_pieces_are_consumed_not_emitted() -> None:
    text = "That is all for now.\n...\n!!! —\nOkay then."
    chunks = run([text])
    assert texts(chunks) == ["That is all for now.", "Okay then."]
    assert chunks[1].start == text.index("Okay")
    assert chunks[1].first is False


def test_offsets_map_back_to_the_fed_text_across_turns_and_clears() -> None:
    chunker = Chunker()
    fed = ""
    chunks: list[Chunk] = []
    for piece, action in [
        ("  Héllo 👋 there, how are you? ", None),
        ("Fine. ", "flush"),
        ("This will be dropped", "clear"),
        ("\n\nNew turn, ", None),
        ("new text. Done", "flush"),
    ]:
        fed += piece
        chunks += chunker.push(piece)
        if action == "flush":
            chunks += chunker.flush()
        elif action == "clear":
            assert chunker.clear() == len("This will be dropped")
    assert chunker.offset == len(fed)
    assert texts(chunks) == ["Héllo 👋 there,", "how are you?", "Fine.", "New turn, new text.", "Done"]
    assert [chunk.first for chunk in chunks] == [True, False, False, True, False]
    for chunk in chunks:
        assert normalize(fed[chunk.start : chunk.end]).strip() == chunk.text == fed[chunk.start : chunk.end]


# --- flush, flush_idle, clear, configure ----------------------------------------------------------


def test_flush_ends_the_turn() -> None:
    chunker = Chunker()
    assert texts(chunker.push("Hello there, how are you")) == ["Hello there,"]
    assert [(c.text, c.first) for c in chunker.flush()] == [("how are you", False)]
    assert chunker.flush() == []
    assert chunker.buffered_chars == 0
    assert [(c.text, c.first) for c in run(["Next turn."], chunker)] == [("Next turn.", True)]


def test_flush_idle_emits_complete_words_and_keeps_the_turn() -> None:
    chunker = Chunker()
    assert [(c.text, c.first) for c in chunker.push("Hello wor")] == []
    assert [(c.text, c.first) for c in chunker.flush_idle()] == [("Hello", True)]
    assert chunker.buffered_chars == len("wor")
    assert chunker.flush_idle() == []  # "wor" may still be "world"
    assert [(c.text, c.first) for c in chunker.push("ld.")] == []
    assert [(c.text, c.first) for c in chunker.flush()] == [("world.", False)]


@pytest.mark.parametrize(
    ("text", "expected", "left"),
    [
        ("We met Dr. ", ["We met Dr."], ""),  # complete words, even before a missing name
        ("Pi is 3.", ["Pi is"], "3."),  # "3." may become "3.14"
        ("Nothing", [], "Nothing"),
        ("你好。我是", ["你好。"], "我是"),  # no spaces in CJK: a resolved boundary is a safe end
        (  # split by the same rules as ever
            "Hello there, how are you doing today? I am fine and you are too",
            ["Hello there,", "how are you doing today?", "I am fine and you are"],
            "too",
        ),
    ],
)
def test_flush_idle_cases(text: str, expected: list[str], left: str) -> None:
    chunker = Chunker()
    assert texts(chunker.push(text) + chunker.flush_idle()) == expected
    assert chunker.buffered_chars == len(left)
    assert texts(chunker.flush()) == ([left] if left else [])


def test_clear_drops_the_buffer_and_starts_a_turn() -> None:
    chunker = Chunker()
    assert chunker.clear() == 0
    chunker.push("Hello there, how are you")
    assert chunker.buffered_chars == len("how are you")
    assert chunker.clear() == len("how are you")
    assert chunker.buffered_chars == 0
    assert chunker.flush() == []
    chunks = run(["Again, from the top."], chunker)
    assert [(c.text, c.first, c.start) for c in chunks] == [("Again, from the top.", True, 24)]
    assert chunker.offset == 24 + len("Again, from the top.")


def test_configure_takes_effect() -> None:
    chunker = Chunker()
    long_text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho."
    chunker.configure(first_chunk_chars=20, max_chunk_chars=30)
    chunks = run([long_text], chunker)
    assert len(chunks[0].text) <= 20
    assert all(len(chunk.text) <= 30 for chunk in chunks)
    assert " ".join(texts(chunks)) == long_text
    chunker.configure(max_chunk_chars=500)  # one limit alone; the other stays
    chunks = run([long_text], chunker)
    assert texts(chunks)[0] == "alpha beta gamma"
    assert texts(chunks)[1:] == [long_text[len("alpha beta gamma ") :]]


def test_configure_mid_turn_applies_to_the_next_chunks() -> None:
    chunker = Chunker()
    assert texts(chunker.push(PREAMBLE + "Then")) == ["Okay, here we go now."]
    chunker.configure(max_chunk_chars=20)
    chunks = chunker.push(" a sentence that runs well past twenty characters")
    assert texts(chunks) == ["Then a sentence that", "runs well past"]
    assert [chunk.first for chunk in chunks] == [False, False]


def test_configure_validates_and_caps_the_first_limit() -> None:
    chunker = Chunker()
    with pytest.raises(ValueError):
        chunker.configure(first_chunk_chars=0)
    with pytest.raises(ValueError):
        Chunker(max_chunk_chars=-1)
    chunker.configure(first_chunk_chars=100, max_chunk_chars=20)
    assert all(len(chunk.text) <= 20 for chunk in run(["word " * 40], chunker))


# --- properties -----------------------------------------------------------------------------------

# fmt: off
TOKENS = [
    "Hello", "world", "it", "Dr.", "Mr.", "e.g.", "i.e.", "U.S.", "a.m.", "J.", "I", "No.", "3.14",
    "1,000.50", "10:30", URL, "a.b@c.com", "www.x.org", "...", "…", ".", ",", ";", ":", "!", "?", "?!",
    "—", "–", "-", '"', "'", "(", ")", "你好。", "。", "、", "x" * 70, "ß", "Ünïcödé", "👋",
]
# fmt: on
SEPARATORS = ["", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n"]


def _joined(parts: list[tuple[str, str]]) -> str:
    return "".join(token + separator for token, separator in parts)


token_texts = st.lists(st.tuples(st.sampled_from(TOKENS), st.sampled_from(SEPARATORS)), max_size=60).map(
    _joined
)
punctuated_texts = st.text(alphabet=st.sampled_from("ab1 .,!?…\n—-\"'A。"), max_size=300)
any_texts = st.one_of(token_texts, punctuated_texts, st.text())
# Words stay short (every token is followed by whitespace), so no hard cut is ever needed.
spaced_texts = st.lists(
    st.tuples(st.sampled_from(TOKENS), st.sampled_from([" ", "  ", "\n", "\t"])), max_size=60
).map(_joined)


def _split(data: st.DataObject, text: str, most: int) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        size = data.draw(st.integers(1, most))
        pieces.append(text[i : i + size])
        i += size
    return pieces


def _check_chunks(fed: str, chunks: list[Chunk], chunker: Chunker, first: int = 60, most: int = 250) -> None:
    covered: set[int] = set()
    previous_end = 0
    for chunk in chunks:
        assert normalize(fed[chunk.start : chunk.end]).strip() == chunk.text
        assert chunk.text == chunk.text.strip() and any(ch.isalnum() for ch in chunk.text)
        assert chunk.start >= previous_end
        previous_end = chunk.end
        assert len(chunk.text) <= most
        if chunk.first:
            # Longer only when it is a single word longer than the first-chunk limit.
            assert len(chunk.text) <= min(first, most) or not any(ch.isspace() for ch in chunk.text)
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(fed) if ch.isalnum() and ch not in ELONGATION)
    assert chunker.offset == len(fed)


@settings(max_examples=300, deadline=None)
@given(text=any_texts, data=st.data())
def test_chunks_cover_every_letter_and_digit_with_exact_offsets(text: str, data: st.DataObject) -> None:
    chunker = Chunker()
    chunks = run(_split(data, text, 8), chunker)
    _check_chunks(text, chunks, chunker)
    assert [chunk.first for chunk in chunks] == [index == 0 for index in range(len(chunks))]
    assert chunker.buffered_chars == 0


@settings(max_examples=300, deadline=None)
@given(text=any_texts, data=st.data())
def test_streaming_in_pieces_gives_the_same_chunks_as_pushing_whole(text: str, data: st.DataObject) -> None:
    # Every decision waits until it cannot change with more text, so how text is split never matters.
    whole = run([text])
    assert run(_split(data, text, 3)) == whole
    assert run(list(text)) == whole


@settings(max_examples=300, deadline=None)
@given(text=spaced_texts, data=st.data())
def test_flush_idle_never_splits_a_word(text: str, data: st.DataObject) -> None:
    chunker = Chunker()
    chunks: list[Chunk] = []
    for piece in _split(data, text, 5):
        chunks += chunker.push(piece)
        if data.draw(st.booleans()):
            chunks += chunker.flush_idle()
    chunks += chunker.flush()
    _check_chunks(text, chunks, chunker)
    for chunk in chunks:
        assert not (text[chunk.end - 1].isalnum() and text[chunk.end : chunk.end + 1].isalnum())
        assert not (text[chunk.start].isalnum() and chunk.start > 0 and text[chunk.start - 1].isalnum())


# --- complexity -----------------------------------------------------------------------------------

PARAGRAPH = (
    "Dr. Smith said, at 10:30 a.m., that the U.S. economy grew 3.5 percent; e.g. exports rose. "
    f"See {URL} for the data... It was, in short, a good year! Was it? Yes. "
)


@pytest.mark.parametrize(
    ("text", "max_chars"),
    [
        ((PARAGRAPH * 200)[:20_000], 250),
        (("word " * 4_000)[:20_000], 250),  # no punctuation at all: only word cuts
        ("x" * 20_000, 250),  # one endless word: only hard cuts
        (("and so, " * 2_500)[:20_000], 100_000),  # one huge sentence that is never cut until the flush
    ],
    ids=["prose", "words", "one-word", "one-sentence"],
)
def test_streaming_2_chars_at_a_time_is_linear(text: str, max_chars: int) -> None:
    # A complexity check, not a timing test: quadratic rescanning of 20,000 characters takes many seconds.
    chunker = Chunker(max_chunk_chars=max_chars)
    started = time.perf_counter()
    chunks = run(pieces_of(text, 2), chunker)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0 * TIMESCALE
    _check_chunks(text, chunks, chunker, most=max_chars)
