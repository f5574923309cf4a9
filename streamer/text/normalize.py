"""Make a chunk's text safe to speak: no control characters, no elongation marks, no long symbol runs.

Engines read what they cannot pronounce by name, so a few bytes of odd text can buy a lot of audio:
50 ARABIC TATWEEL (U+0640, 100 bytes of UTF-8) made piper speak 80 s and its worker grow by 1.6 GB;
"!!!!!!!!" is read as "exclamation mark" eight times by espeak; a NUL makes piper fail with
``embedded null character``. ``normalize`` is pure and never lengthens its text: the chunker applies it
to each chunk it cuts, keeping the chunk's offsets into what the client sent.
"""

from __future__ import annotations

import re

__all__ = ["ELONGATION", "normalize"]

# Kashida marks only stretch the letters around them (a justification device): removing them leaves the
# same word ("كـتـاب" -> "كتاب"). ARABIC TATWEEL and NKO LAJANYALAN; both are letters to str.isalnum.
ELONGATION = "\u0640\u07fa"
_ELONGATION = re.compile(f"[{ELONGATION}]+")
# Control characters (C0, DEL, C1) but tab, line feed and carriage return, and lone surrogates (JSON can
# carry "\ud800"; no encoder takes it): each becomes a space, so the words around it stay apart.
_CONTROL = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# One character that is neither a letter, a digit nor whitespace, four or more times in a row: "!!!!",
# "------", "😀😀😀😀", a combining mark repeated. Three stay ("...", "?!!" and "--" read naturally).
_RUN = re.compile(r"([^\w\s]|_)\1{3,}")


def normalize(text: str) -> str:
    """``text`` as an engine should get it (see the module docstring). Idempotent; letters, digits and
    whitespace other than control characters are kept in order; the result is never longer."""
    text = _ELONGATION.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _RUN.sub(r"\1", text)
