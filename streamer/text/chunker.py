"""Cut streamed text into speakable chunks: a short first chunk per turn for speed, then whole sentences."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .boundaries import (
    CJK_SENTENCE_TAIL,
    HORIZONTAL_SPACE,
    LAST_SPACE,
    LINE_BREAKS,
    MARK,
    NON_SPACE,
    PHRASE_STARTS,
    SENTENCE_TAIL,
    SPACE,
    SPACED_CLAUSE_TAIL,
    SPACED_WORD,
    SPEAKABLE,
    UNSPACED_CLAUSE_TAIL,
    can_start_sentence,
    is_abbreviation,
    match_end,
)
from .normalize import normalize

__all__ = ["Chunk", "Chunker"]

# A sentence that ends this few characters past the first-chunk limit goes whole: "The new connection owns
# the | session." would cost more in prosody than the few milliseconds of synthesis it saves.
_FIRST_SENTENCE_SLACK = 12
_LONGEST_LIST_NUMBER, _LONGEST_INDENT = 3, 8
# Text kept before the head so that look-behind (abbreviations, list numbers) sees the same characters
# however the text arrived; longer than any look-behind.
_HISTORY = 16


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of text ready to synthesize, and where it lies in everything the chunker was fed."""

    text: str  # what is spoken: normalize(fed_text[start:end]), stripped of surrounding whitespace
    start: int  # code-point offset of the chunk's first character in all text ever pushed
    end: int  # one past its last code point in that text
    first: bool  # the first chunk of its turn
    # Whether speech pauses where the chunk ends (a sentence or clause end, a line break, the end of the
    # text); False when it was cut inside a phrase (an early first chunk, a sentence over the limit), so
    # the engine's phrase-final pause at its end does not belong there.
    pause: bool = True


class Chunker:
    """Turns a stream of text pieces into chunks for the TTS engine.

    The first chunk of a turn ends at the first clause or sentence boundary between ``min_first_chunk_chars``
    and ``first_chunk_chars`` (or at a line break), so audio starts early; with none in reach, before the
    last phrase-starting word ("and", "in", "with"...) in reach, else after the last complete word. Later
    chunks are whole sentences, each emitted as soon as it is known to be complete. Work per ``push`` is
    proportional to the new text.
    """

    def __init__(
        self, first_chunk_chars: int = 30, max_chunk_chars: int = 250, min_first_chunk_chars: int = 12
    ) -> None:
        if min_first_chunk_chars < 0:
            raise ValueError(f"min_first_chunk_chars must be >= 0, got {min_first_chunk_chars}")
        self._min_first = min_first_chunk_chars
        self._first_chars = first_chunk_chars
        self._max_chars = max_chunk_chars
        self.configure(first_chunk_chars, max_chunk_chars)
        # All positions below are absolute code-point offsets into everything ever pushed.
        self._buf = ""  # unconsumed text plus a little history, starting at _buf_start
        self._buf_start = 0
        self._fed = 0
        self._head = 0  # first unconsumed code point; never whitespace while anything is buffered
        self._ext = 0  # one past the last non-whitespace code point pushed
        self._scan_pos = 0  # marks before this are classified; scanning resumes here
        self._line_start = 0  # just after the latest line break, so blank lines are not rescanned
        self._turn_start = 0
        # Resolved boundaries, each the offset just after a chunk's last character, in increasing order.
        self._sentences: deque[int] = deque()  # sentence ends and line breaks
        self._clauses: deque[int] = deque()
        self._breaks: deque[int] = deque()  # line breaks alone: they end even a very short first chunk
        self._first = True
        self._soft_cut = False  # the cut being made is inside a phrase (see Chunk.pause)

    @property
    def buffered_chars(self) -> int:
        """Code points pushed but not yet emitted or consumed (leading whitespace is consumed at once)."""
        return self._fed - self._head

    @property
    def offset(self) -> int:
        """Total code points ever pushed, including dropped ones."""
        return self._fed

    def configure(self, first_chunk_chars: int | None = None, max_chunk_chars: int | None = None) -> None:
        """Change the limits live; they apply from the next call. The first limit is capped at the max."""
        first = self._first_chars if first_chunk_chars is None else first_chunk_chars
        most = self._max_chars if max_chunk_chars is None else max_chunk_chars
        if first < 1 or most < 1:
            raise ValueError(f"chunk limits must be >= 1, got first={first} max={most}")
        self._first_chars, self._max_chars = first, most

    def push(self, text: str) -> list[Chunk]:
        """Append text; return the chunks that are complete now (possibly none)."""
        if not text:
            return []
        was_empty = self._head == self._fed
        self._buf += text
        content = len(text.rstrip())
        if content:
            self._ext = self._fed + content
        self._fed += len(text)
        if was_empty:
            self._skip_space()
        return self._drain(self._fed, self._ext, final=False)

    def flush(self) -> list[Chunk]:
        """End the turn: return everything buffered, split by the same rules; the next chunk starts a turn."""
        chunks = self._drain(self._fed, self._ext, final=True)
        self._reset_turn()
        return chunks

    def flush_idle(self) -> list[Chunk]:
        """Text stopped arriving: emit the complete words buffered (never half a word); the turn goes on."""
        head, base = self._head, self._buf_start
        if head >= self._ext:
            return []
        space = LAST_SPACE.match(self._buf, head - base)
        end = head if space is None else base + space.end() - 1
        ext = head + len(self._buf[head - base : end - base].rstrip())
        # A resolved boundary is a safe end too, and the only one in CJK text, which has no spaces.
        last_bound = max((bounds[-1] for bounds in (self._sentences, self._clauses) if bounds), default=head)
        if last_bound > ext:
            end = ext = last_bound
        if ext <= head:
            return []
        return self._drain(end, ext, final=True)

    def clear(self) -> int:
        """Barge-in: drop the buffer and return how many code points were dropped; offsets keep counting."""
        dropped = self._fed - self._head
        self._reset_turn()
        return dropped

    # --- scanning: classify punctuation into boundaries, once each, as text arrives -------------------------

    def _scan(self, end: int, final: bool) -> None:
        """Classify the marks up to ``end``; stop at one whose meaning depends on text not yet pushed."""
        buf, base = self._buf, self._buf_start
        # This may lie before the head: a hard cut can land inside punctuation that is still being classified.
        i, stop = self._scan_pos - base, end - base
        if i >= stop:
            return
        while (mark := MARK.search(buf, i, stop)) is not None:
            resume = self._classify(buf, mark.start(), stop, final)
            if resume is None:
                self._scan_pos = base + mark.start()
                return
            i = resume
        self._scan_pos = end

    def _classify(self, buf: str, j: int, end: int, final: bool) -> int | None:
        """Record the boundary made by the mark at buf[j], if any; return where to resume, or None to wait."""
        ch = buf[j]
        if ch in LINE_BREAKS:
            self._line_break(buf, j)
            return j + 1
        if ch in ".!?…":
            return self._sentence_end(buf, j, end, final)
        if ch in "。！？｡":
            tail, bounds = CJK_SENTENCE_TAIL, self._sentences
        elif ch in "、，；：—":
            tail, bounds = UNSPACED_CLAUSE_TAIL, self._clauses
        else:
            return self._spaced_clause(buf, j, end, final)
        stop = match_end(tail, buf, j, end)
        if stop == end:
            # The punctuation or its closing quotes may go on; at a flush the end bound covers it.
            return stop if final else None
        self._add(bounds, stop)
        return stop

    def _spaced_clause(self, buf: str, j: int, end: int, final: bool) -> int | None:
        if buf[j] == "-" and j > 0 and not buf[j - 1].isspace():
            return j + 1  # a hyphen inside a word; only a free-standing " - " is a dash
        stop = match_end(SPACED_CLAUSE_TAIL, buf, j, end)
        if stop == end:
            return stop if final else None
        if buf[stop].isspace():
            self._add(self._clauses, stop)
        return stop

    def _sentence_end(self, buf: str, j: int, end: int, final: bool) -> int | None:
        tail = SENTENCE_TAIL.match(buf, j, end)
        assert tail is not None  # buf[j] is one of its characters
        stop = tail.end()
        after = match_end(HORIZONTAL_SPACE, buf, stop, end)
        if after == end:
            # "Dr." + " Smith" and "3." + "14": what follows the space decides, so wait for it.
            return stop if final else None
        if after == stop or buf[after] in LINE_BREAKS:
            return stop  # "3.14", "a.b@c.com", or a line break, which is a boundary of its own
        run, starter = tail.group(1), buf[after]
        if "…" in run or ".." in run:
            # An ellipsis before a capital ends a sentence; inside a sentence it is still a place to pause.
            self._add(self._sentences if can_start_sentence(starter) else self._clauses, stop)
        elif can_start_sentence(starter) and not (
            run == "." and (is_abbreviation(buf, j, starter) or self._is_list_number(buf, j))
        ):
            self._add(self._sentences, stop)
        return stop

    def _is_list_number(self, buf: str, dot: int) -> bool:
        """Whether a number starting its line precedes the dot: "1. Buy milk" is one item, not "1." alone."""
        start = dot
        while start > 0 and dot - start < _LONGEST_LIST_NUMBER and buf[start - 1].isdigit():
            start -= 1
        if start == dot or (start > 0 and buf[start - 1].isdigit()):
            return False
        while start > 0 and dot - start < _LONGEST_LIST_NUMBER + _LONGEST_INDENT and buf[start - 1] in " \t":
            start -= 1
        if start == 0:
            return self._buf_start == self._turn_start
        return buf[start - 1] in LINE_BREAKS

    def _line_break(self, buf: str, j: int) -> None:
        base = self._buf_start
        floor = max(self._head, self._line_start) - base
        k = j
        while k > floor and buf[k - 1].isspace():
            k -= 1
        if k > floor:  # a blank line adds nothing: the previous line already ended
            self._add(self._sentences, k)
            self._add(self._breaks, k)
        self._line_start = base + j + 1

    def _add(self, bounds: deque[int], index: int) -> None:
        position = self._buf_start + index
        if position <= self._head:
            return  # already consumed by a cut
        if not bounds or bounds[-1] < position:
            bounds.append(position)

    # --- cutting: choose where the next chunk ends ---------------------------------------------------------

    def _drain(self, end: int, ext: int, final: bool) -> list[Chunk]:
        """Emit the chunks decided by the text up to ``end``; ``final`` makes ``ext`` a sentence end."""
        self._scan(end, final)
        if final and ext > self._head:
            self._add(self._sentences, ext - self._buf_start)
        chunks: list[Chunk] = []
        while self._head < ext:
            self._soft_cut = False
            cut = self._first_cut(end, ext, final) if self._first else self._later_cut(ext)
            if cut is None:
                break
            self._consume(cut, chunks)
        return chunks

    def _first_cut(self, end: int, ext: int, final: bool) -> int | None:
        head = self._head
        first = min(self._first_chars, self._max_chars)
        low, high = head + min(self._min_first, first), head + first
        # The earliest boundary in [low, high] wins; waiting for a later one would only delay the first audio.
        candidates = [_earliest_at_least(self._sentences, low), _earliest_at_least(self._clauses, low)]
        if self._breaks:
            candidates.append(self._breaks[0])
        in_range = [bound for bound in candidates if bound is not None and bound <= high]
        if in_range:
            return min(in_range)
        if ext > high:
            # Every boundary up to ``high`` is resolved now. A whole short sentence ("Yes.", or one ending
            # just past the limit) beats a cut mid-sentence; failing that, the start of a phrase; failing
            # that, the last complete word; failing that, a word longer than the limit.
            sentence = _last_at_most(self._sentences, high)
            if sentence is not None:
                return sentence
            reach = head + min(first + _FIRST_SENTENCE_SLACK, self._max_chars)
            sentence = _earliest_at_least(self._sentences, high)
            if sentence is not None and sentence <= reach:
                return sentence
            if ext <= reach and not final:
                return None  # that sentence end may yet come
            phrase = self._phrase_start(low, high, end, ext, final)
            if phrase is not None:
                self._soft_cut = True
                return phrase if phrase > 0 else None
            word = self._last_space(head, high)
            self._soft_cut = True
            return word if word is not None else self._end_of_long_word(ext, final)
        return ext if final else None

    def _later_cut(self, ext: int) -> int | None:
        # Each sentence goes as soon as it is complete: latency matters more than merging short ones.
        head = self._head
        limit = head + self._max_chars
        if self._sentences and self._sentences[0] <= limit:
            return self._sentences[0]
        if ext - head > self._max_chars:
            clause = _last_at_most(self._clauses, limit)
            if clause is not None:
                return clause
            word = self._last_space(head, limit)
            self._soft_cut = True
            return limit if word is None else word  # hard cut: a 400-character URL
        return None

    def _phrase_start(self, low: int, high: int, end: int, ext: int, final: bool) -> int | None:
        """The end of the last word in [low, high] that a phrase-starting word follows; -1: wait, the
        word after the last candidate is still arriving (so the cut never depends on how text was split)."""
        base = self._buf_start
        cut = None
        for match in SPACED_WORD.finditer(self._buf, low - base, ext - base):
            if match.start() > high - base:
                break
            whole = match.end() < ext - base or end > ext or final
            if not whole:
                return -1
            if match.group(1).lower() in PHRASE_STARTS:
                cut = base + match.start()
        return cut

    def _last_space(self, head: int, limit: int) -> int | None:
        """The last whitespace in (head, limit], where a chunk of complete words may end."""
        base = self._buf_start
        space = LAST_SPACE.match(self._buf, head - base + 1, limit - base + 1)
        return None if space is None else base + space.end() - 1

    def _end_of_long_word(self, ext: int, final: bool) -> int | None:
        """The first word is longer than the first-chunk limit: end the chunk with it, or hard at the max."""
        head, base = self._head, self._buf_start
        limit = head + self._max_chars
        space = SPACE.search(self._buf, head - base, min(limit, ext) - base + 1)
        if space is not None:
            return base + space.start()
        if ext - head > self._max_chars:
            return limit
        return ext if final else None

    def _consume(self, cut: int, chunks: list[Chunk]) -> None:
        base = self._buf_start
        text = self._buf[self._head - base : cut - base].rstrip()
        spoken = normalize(text).strip()
        if SPEAKABLE.search(spoken):  # punctuation alone (or tatweel alone) is consumed silently
            chunks.append(Chunk(spoken, self._head, self._head + len(text), self._first, not self._soft_cut))
            self._first = False
        self._head = cut
        self._skip_space()
        for bounds in (self._sentences, self._clauses, self._breaks):
            while bounds and bounds[0] <= self._head:
                bounds.popleft()

    def _skip_space(self) -> None:
        base = self._buf_start
        found = NON_SPACE.search(self._buf, self._head - base)
        self._head = self._fed if found is None else base + found.start()
        # Drop consumed text once it is most of the buffer, so appends and cuts stay cheap (amortized O(1)).
        drop = min(self._head, self._scan_pos) - base - _HISTORY
        if drop > 0 and (self._head == self._fed or 2 * drop >= len(self._buf)):
            self._buf = self._buf[drop:]
            self._buf_start += drop

    def _reset_turn(self) -> None:
        self._head = self._scan_pos = self._line_start = self._buf_start = self._turn_start = self._fed
        self._buf = ""
        for bounds in (self._sentences, self._clauses, self._breaks):
            bounds.clear()
        self._first = True


def _earliest_at_least(bounds: deque[int], low: int) -> int | None:
    # Only boundaries shorter than the minimum first chunk are skipped here, so this stays short.
    return next((bound for bound in bounds if bound >= low), None)


def _last_at_most(bounds: deque[int], limit: int) -> int | None:
    # Stops at the first bound past the limit; those before it are consumed by the cut this feeds.
    last = None
    for bound in bounds:
        if bound > limit:
            break
        last = bound
    return last
