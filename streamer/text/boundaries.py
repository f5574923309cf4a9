"""Where text may be cut: punctuation marks, sentence and clause tails, abbreviations, phrase starts.

The chunker's vocabulary, kept apart from its state machine: patterns and word lists, and the pure
look-behind checks built on them. Nothing here keeps state between calls.
"""

from __future__ import annotations

import re

# Characters that may follow a sentence's or clause's punctuation and still belong to it: 'He said "no."'.
_CLOSERS = "\"'”’»›)]}」』）】〕〉》"
# Besides capitals, digits and caseless letters (CJK, Arabic...), characters that may open a sentence.
_OPENERS = "\"'“‘„«‹([{「『（【〔〈《¿¡*$€£¥#"
LINE_BREAKS = "\n\r\u2028\u2029\x85"
_CLOSE = "".join(map(re.escape, _CLOSERS))

# Every character that might make a boundary; everything else is skipped at C speed.
MARK = re.compile(r"[.!?…。！？｡,;:、，；：—–\-\n\r\u2028\u2029\x85]")
SENTENCE_TAIL = re.compile(rf"([.!?…]+)[{_CLOSE}]*")
# CJK punctuation and the em dash end a sentence or clause without whitespace after them: CJK text has none.
CJK_SENTENCE_TAIL = re.compile(rf"[。！？｡]+[{_CLOSE}]*")
UNSPACED_CLAUSE_TAIL = re.compile(rf"(?:[、，；：]+|—+)[{_CLOSE}]*")
# These only mark a clause when whitespace follows: "1,000", "10:30", "https://", "2010–2020", "well-known".
SPACED_CLAUSE_TAIL = re.compile(rf"(?:[,;:]+|[–-]+)[{_CLOSE}]*")
HORIZONTAL_SPACE = re.compile(r"[^\S\n\r\u2028\u2029\x85]*")
SPACE = re.compile(r"\s")
NON_SPACE = re.compile(r"\S")
LAST_SPACE = re.compile(r".*\s", re.DOTALL)
SPEAKABLE = re.compile(r"[^\W_]")  # a letter or digit, exactly what str.isalnum accepts
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # U.S, e.g, a.m, U.S.A (the final dot is not included)
SPACED_WORD = re.compile(r"\s+([^\W\d_]+)")  # a space and the word after it: where a phrase may start

# fmt: off
# Lower case, without the final dot. A dot after these never ends a sentence, even before a capital.
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "st", "prof", "jr", "sr", "etc", "vs", "inc", "ltd", "co", "corp", "mt",
        "gen", "col", "capt", "lt", "sgt", "rev", "hon", "gov", "sen", "rep", "approx", "dept", "ave",
        "blvd", "cf", "al", "viz",
    }
)
# These are abbreviations only before a number: "No. 5", "Fig. 3", "Jan. 12"; "No. I disagree." still splits.
_NUMBER_ABBREVIATIONS = frozenset(
    {
        "no", "nos", "fig", "figs", "vol", "vols", "pp", "ch", "sec", "eq", "art",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)
# A first chunk cut mid-sentence sounds most natural just before one of these (English): "It is twelve
# degrees | and cloudy", not "It is twelve degrees and | cloudy".
PHRASE_STARTS = frozenset(
    {
        "and", "but", "or", "nor", "so", "yet", "because", "although", "though", "while", "when", "where",
        "which", "who", "whom", "whose", "that", "if", "unless", "until", "since", "after", "before", "as",
        "with", "without", "in", "on", "at", "to", "for", "from", "of", "by", "about", "into", "over",
        "under", "between", "through", "during", "than", "then", "behind", "around", "across", "against",
        "along", "toward", "towards", "within", "upon", "via", "like",
    }
)
# fmt: on
_LONGEST_ABBREVIATION = 10


def match_end(pattern: re.Pattern[str], buf: str, pos: int, end: int) -> int:
    """Where ``pattern`` (which always matches at a mark) stops matching from ``pos``."""
    found = pattern.match(buf, pos, end)
    assert found is not None
    return found.end()


def can_start_sentence(char: str) -> bool:
    return char.isdigit() or char in _OPENERS or (char.isalpha() and not char.islower())


def is_abbreviation(buf: str, dot: int, following: str) -> bool:
    """Whether the word before the dot at buf[dot] is an abbreviation or an initial ("Dr", "e.g", "J")."""
    start = dot
    while start > 0 and dot - start <= _LONGEST_ABBREVIATION:
        if not (buf[start - 1].isalpha() or buf[start - 1] == "."):
            break
        start -= 1
    if dot - start > _LONGEST_ABBREVIATION:
        return False
    word = buf[start:dot].lstrip(".")
    lower = word.lower()
    return (
        lower in _ABBREVIATIONS
        or (following.isdigit() and lower in _NUMBER_ABBREVIATIONS)
        # An initial, as in "J. Smith"; but "So did I. Then" splits.
        or (len(word) == 1 and word.isupper() and word != "I")
        or _DOTTED.fullmatch(word) is not None
    )
