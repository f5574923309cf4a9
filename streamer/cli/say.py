"""`streamer say`: text to one audio file, synthesized in this process (no server, no network).

The text is cut by the same chunker as a session (sentences, up to ``chunker.max_chunk_chars``),
each chunk is synthesized by the engine and shaped for click-free joins, and the audio is encoded
as it comes by a `StreamingEncoder` and written out at once, so a long text streams to stdout too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from ..audio import PHRASE_GAP_MS, ChunkShaper, StreamingEncoder
from ..errors import ConfigError, InvalidField, UnknownVoice
from ..protocol.fields import SPEED_MAX, SPEED_MIN
from ..runtime import default_voice_problem
from .settings import settings_from_args

# Extensions `-o FILE` understands, and the format each means.
EXTENSIONS = {
    ".wav": "wav",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".opus": "ogg",
    ".flac": "flac",
    ".aac": "aac",
    ".adts": "aac",
    ".pcm": "pcm",
    ".raw": "pcm",
}
PROGRESS_WIDTH = 30


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "say",
        help="synthesize text to an audio file, offline (no server needed)",
        description="Synthesize text in this process with the installed engines and write one audio "
        "file. The text comes from the arguments, from --input FILE, or from standard input.",
    )
    p.add_argument("text", nargs="*", help="text to speak (none, or '-': read standard input)")
    p.add_argument("-i", "--input", help="read the text from this file")
    p.add_argument(
        "-o", "--output", help="audio file to write ('-': standard output); its extension names the format"
    )
    p.add_argument(
        "-f", "--format", choices=sorted(set(EXTENSIONS.values())), help="audio format (default: wav)"
    )
    p.add_argument("--engine", help="espeak | piper | melo (default: tts.engine)")
    p.add_argument("--voice", help="voice name (`streamer voices` lists them)")
    p.add_argument("--language", help="language, when no voice is named (default: tts.default_language)")
    p.add_argument(
        "--speed",
        type=float,
        help=f"speaking rate multiplier, {SPEED_MIN} .. {SPEED_MAX} (default: tts.default_speed)",
    )
    p.add_argument("--sample-rate", type=int, help="output rate in Hz (default: audio.default_sample_rate)")
    p.add_argument("--config", help="YAML config file laid over the packaged defaults (env: STREAMER_CONFIG)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on standard error (default: on a terminal, for more than one chunk)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on standard error")


def read_text(args: argparse.Namespace) -> str:
    if args.input:
        return Path(args.input).read_text(encoding="utf-8")
    if args.text and args.text != ["-"]:
        return " ".join(args.text)
    if sys.stdin.isatty():
        print("type the text, then Ctrl-D", file=sys.stderr)
    return sys.stdin.read()


def output_format(output: str | None, fmt: str | None) -> str:
    if fmt:
        return fmt
    if output in (None, "-"):
        return "wav"
    suffix = Path(output).suffix.lower()
    if suffix not in EXTENSIONS:
        raise InvalidField(
            f"cannot tell the format from {output!r}: use -f FORMAT or one of {', '.join(EXTENSIONS)}",
            field="format",
        )
    return EXTENSIONS[suffix]


class Progress:
    """``[#####-----] 3/10 chunks, 12.4 s of audio`` redrawn in place on standard error."""

    def __init__(self, total: int, enabled: bool, stream: IO[str] = sys.stderr) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream

    def update(self, done: int, audio_s: float) -> None:
        if not self.enabled:
            return
        filled = PROGRESS_WIDTH * done // max(self.total, 1)
        bar = "#" * filled + "-" * (PROGRESS_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total} chunks, {audio_s:.1f} s of audio")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _finish_wav(out: IO[bytes]) -> None:
    """Write the real sizes into a streamed WAV header (it says "unknown") when the file can seek."""
    try:
        size = out.seek(0, os.SEEK_END)
        out.seek(4)
        out.write((size - 8).to_bytes(4, "little"))
        out.seek(40)
        out.write((size - 44).to_bytes(4, "little"))
    except OSError:  # a pipe: players take the streamed header's "until the end of the file"
        pass


def run(args: argparse.Namespace) -> int:
    from ..engines.base import SynthesisRequest
    from ..engines.catalog import Catalog
    from ..text import Chunker

    settings = settings_from_args(args)
    text = read_text(args).strip()
    if not text:
        print("streamer: nothing to say (give text, --input FILE, or standard input)", file=sys.stderr)
        return 2
    output = args.output
    if output is None:
        if sys.stdout.isatty():
            print("streamer: name the output with -o FILE (or -o - for standard output)", file=sys.stderr)
            return 2
        output = "-"
    fmt = output_format(output, args.format)
    speed = args.speed if args.speed is not None else settings.tts.default_speed
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise InvalidField(f"--speed must be between {SPEED_MIN} and {SPEED_MAX}", field="speed")

    tts = settings.tts
    catalog = Catalog(settings.engines.model_dump(), "auto" if args.engine else tts.engine)
    if not (args.engine or args.voice or args.language):  # tts.default_voice is what speaks
        problem = default_voice_problem(catalog, settings)
        if problem:
            raise ConfigError(problem)
    try:
        voice = catalog.resolve(
            args.engine,
            args.voice,
            args.language,
            default_voice=tts.default_voice,
            default_language=tts.default_language,
            default_voice_id=tts.default_voice_id,
        )
    except UnknownVoice as exc:
        if args.voice is None:
            raise
        engine = args.engine or catalog.default_engine  # the catalog's message names the REST route
        raise UnknownVoice(
            f"unknown voice {args.voice!r} for engine {engine}; "
            f"`streamer voices --engine {engine}` lists them",
            **exc.details,
        ) from None
    engine = catalog.engine(voice.engine)
    chunk_chars = settings.chunker.max_chunk_chars  # no need for a short first chunk offline
    chunker = Chunker(first_chunk_chars=chunk_chars, max_chunk_chars=chunk_chars)
    chunks = chunker.push(text) + chunker.flush()
    progress = Progress(
        len(chunks), args.progress if args.progress is not None else sys.stderr.isatty() and len(chunks) > 1
    )
    started = time.perf_counter()
    with ExitStack() as stack:
        out = _stdout_for_audio(stack) if output == "-" else stack.enter_context(open(output, "wb"))
        engine.load()
        encoder = StreamingEncoder(fmt, args.sample_rate or settings.audio.default_sample_rate)
        shaper = ChunkShaper()
        progress.update(0, 0.0)
        for number, chunk in enumerate(chunks, 1):
            shaper.start_chunk(voice.sample_rate, tail_ms=None if chunk.pause else PHRASE_GAP_MS)
            request = SynthesisRequest(text=chunk.text, voice=voice.voice, speed=speed)
            for block in engine.synthesize(request, lambda: False):
                out.write(encoder.encode(shaper.process(block), voice.sample_rate))
            out.write(encoder.encode(shaper.end_chunk(), voice.sample_rate))
            progress.update(number, encoder.seconds_in)
        out.write(encoder.flush())
        if fmt == "wav" and output != "-":
            _finish_wav(out)
        progress.finish()
    if not args.quiet:
        where = "standard output" if output == "-" else output
        print(
            f"{where}: {encoder.seconds_in:.2f} s of {fmt} at {encoder.sample_rate} Hz, {voice.engine} voice "
            f"{voice.voice}, {len(chunks)} chunk{'s' if len(chunks) != 1 else ''} in "
            f"{time.perf_counter() - started:.2f} s",
            file=sys.stderr,
        )
    return 0


def _stdout_for_audio(stack: ExitStack) -> IO[bytes]:
    """The real standard output for the audio; anything else printing to it goes to stderr instead.

    An engine library that prints (to Python's sys.stdout or to file descriptor 1) would corrupt the
    audio otherwise.
    """
    sys.stdout.flush()
    audio_fd = os.dup(1)
    saved_fd = os.dup(1)
    os.dup2(2, 1)
    saved_stdout = sys.stdout
    sys.stdout = sys.stderr

    def restore() -> None:
        sys.stdout = saved_stdout
        os.dup2(saved_fd, 1)
        os.close(saved_fd)

    stack.callback(restore)
    return stack.enter_context(os.fdopen(audio_fd, "wb"))
