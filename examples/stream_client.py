"""Speak text through a streamer server: play it as it arrives, or write it to an audio file.

    python examples/stream_client.py "Hello there."                        # plays it (sounddevice)
    python examples/stream_client.py -o hello.mp3 "Hello there."           # no sound device needed
    some-llm | python examples/stream_client.py -o reply.wav               # stdin, streamed as it comes

Text given as arguments is sent as one message; text on standard input is sent line by line as it
arrives, and the server starts speaking at the first complete phrase. Either way it is one turn.
Playback needs `pip install 'streamer[examples]'` (sounddevice and PortAudio); --output does not.
The file's format follows its extension (wav, mp3, ogg, flac, aac, pcm) or --format; WAV is written
from raw PCM with exact sizes in its header.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidURI

from streamer.client import AudioFrame, ClientError, StreamerClient, stream_url_problem

FORMATS = {
    ".wav": "wav",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".opus": "ogg",
    ".flac": "flac",
    ".aac": "aac",
    ".pcm": "pcm",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("text", nargs="*", help="text to speak (none: read standard input)")
    p.add_argument(
        "--url",
        default=os.environ.get("STREAMER_WS_URL", "ws://127.0.0.1:8081/api/v1/stream"),
        help="streaming WebSocket URL (env STREAMER_WS_URL)",
    )
    p.add_argument("--api-key", default=os.environ.get("STREAMER_API_KEY"), help="env STREAMER_API_KEY")
    p.add_argument("-o", "--output", help="write the audio to this file instead of playing it")
    p.add_argument("-f", "--format", choices=sorted(set(FORMATS.values())), help="file format")
    p.add_argument("--voice", help="voice name (GET /api/v1/voices)")
    p.add_argument("--language", help="language, when no voice is named")
    p.add_argument("--engine", help="espeak | piper | melo")
    p.add_argument("--speed", type=float, help="speaking rate, 0.25 .. 4.0")
    p.add_argument("--sample-rate", type=int, default=24000, help="Hz (default 24000)")
    p.add_argument("--msgpack", action="store_true", help="control messages as msgpack instead of JSON")
    p.add_argument("--insecure", action="store_true", help="wss:// without certificate checks")
    return p.parse_args(argv)


def file_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.output).suffix.lower()
    if suffix not in FORMATS:
        sys.exit(f"cannot tell the format of {args.output!r}: use --format")
    return FORMATS[suffix]


class WavSink:
    """Raw PCM from the server into a WAV file whose header states the exact length."""

    def __init__(self, path: str, sample_rate: int) -> None:
        self.file = wave.open(path, "wb")  # noqa: SIM115 (closed in close())
        self.file.setnchannels(1)
        self.file.setsampwidth(2)
        self.file.setframerate(sample_rate)

    async def write(self, frame: AudioFrame) -> None:
        self.file.writeframesraw(frame.data)

    async def close(self) -> None:
        self.file.close()


class FileSink:
    """Encoded audio (the concatenated frames of one turn are one complete file) as it comes."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 (closed in close())

    async def write(self, frame: AudioFrame) -> None:
        self.file.write(frame.data)

    async def close(self) -> None:
        self.file.close()


class Speaker:
    """16-bit PCM played as it arrives; the blocking writes run in a thread, off the event loop."""

    def __init__(self, sample_rate: int) -> None:
        try:
            import sounddevice
        except (ImportError, OSError) as exc:  # OSError: sounddevice without the PortAudio library
            sys.exit(f"playback needs sounddevice and PortAudio ({exc}); or write a file with --output FILE")
        try:
            self.stream = sounddevice.RawOutputStream(samplerate=sample_rate, channels=1, dtype="int16")
        except sounddevice.PortAudioError as exc:  # no output device (a server, a container)
            sys.exit(f"no sound output ({exc}); write a file with --output FILE")
        self.stream.start()

    async def write(self, frame: AudioFrame) -> None:
        await asyncio.to_thread(self.stream.write, frame.data)

    async def close(self) -> None:
        await asyncio.to_thread(self.stream.stop)  # returns once the buffered audio has played
        self.stream.close()


async def stdin_lines() -> AsyncIterator[str]:
    """Standard input line by line, read in a thread: the event loop never waits on the pipe."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        yield line


async def speak(args: argparse.Namespace) -> int:
    fmt = file_format(args) if args.output else "pcm"
    config: dict[str, Any] = {
        key: value
        for key, value in {
            "voice": args.voice,
            "language": args.language,
            "engine": args.engine,
            "speed": args.speed,
            "sample_rate": args.sample_rate,
        }.items()
        if value is not None
    }
    config["format"] = "pcm" if fmt == "wav" else fmt  # WAV is written here, with exact sizes
    async with StreamerClient.connect(
        args.url, api_key=args.api_key, binary=args.msgpack, verify=not args.insecure, **config
    ) as session:
        rate = session.audio_format["sample_rate"]
        sink: WavSink | FileSink | Speaker
        if args.output is None:
            sink = Speaker(rate)
        elif fmt == "wav":
            sink = WavSink(args.output, rate)
        else:
            sink = FileSink(args.output)
        text = " ".join(args.text)
        started = time.perf_counter()
        sender: asyncio.Task[None] | None = None
        if text:
            await session.send_text(text, flush=True)
        else:
            # Sent while the audio is read below; the turn ends (flush) when standard input does.
            async def send_stdin() -> None:
                if await session.stream(stdin_lines(), flush=False):
                    await session.flush()

            sender = asyncio.create_task(send_stdin())
        first_audio: float | None = None
        audio_ms = 0.0
        try:
            async for message in session.events():
                if isinstance(message, AudioFrame):
                    first_audio = first_audio or message.received_at
                    audio_ms += message.duration_ms
                    await sink.write(message)
                elif message.type == "error":
                    print(f"server error: {message['code']}: {message['message']}", file=sys.stderr)
                    if message.get("fatal"):
                        return 1
                elif message.type == "done":
                    break
        finally:
            await sink.close()
            if sender is not None:
                sender.cancel()
                await asyncio.wait([sender])
    ttfa = f"{(first_audio - started) * 1000:.0f} ms" if first_audio else "no audio"
    where = args.output or "the speakers"
    print(f"{audio_ms / 1000:.2f} s of audio to {where}; first audio after {ttfa}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = stream_url_problem(args.url)
    if problem:
        print(f"stream_client: {problem}", file=sys.stderr)
        return 2
    if not args.text and sys.stdin.isatty():
        print("type the text, then Ctrl-D", file=sys.stderr)
    try:
        return asyncio.run(speak(args))
    except (ClientError, OSError, InvalidURI) as exc:
        print(f"stream_client: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
