"""A voice assistant's barge-in, simulated end to end against a streamer server.

A fake language model streams its reply token by token; a speaker plays the audio in real time (through
sounddevice with --play, else a silent clock that takes it at the same pace, or at once with --fast);
after --barge-in seconds the user interrupts, and the assistant answers again in the new generation.

    python examples/voice_assistant.py --url ws://127.0.0.1:8081/api/v1/stream --barge-in 2

It prints the time to first audio, the tokens sent before the barge-in, the interrupt's
acknowledgement latency, the audio dropped, and checks that no audio of the interrupted reply
arrived after the acknowledgement (exit status 1 if any did).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.exceptions import InvalidURI

from streamer.client import AudioFrame, ClientError, StreamerClient, stream_url_problem

REPLY = (
    "Sure! Here is a short history of the lighthouse. The first lighthouses were simply fires lit on "
    "hilltops, so that sailors could find their way home at night. Later, towers were built to raise the "
    "light higher, and the famous lighthouse of Alexandria stood for more than a thousand years. In the "
    "nineteenth century, the Fresnel lens made the beams far brighter, and keepers lived in the towers to "
    "tend the flame through every storm. Today most lights run on their own, watched from afar."
)
ANSWER_AFTER_BARGE_IN = "Of course, I will stop there. What would you like to know instead?"


@dataclass
class Listener:
    """What the speaker heard, frame by frame."""

    first_audio_at: float | None = None
    played_ms: float = 0.0
    frames: list[tuple[float, int]] = field(default_factory=list)  # (received_at, generation)
    done: dict[int, float] = field(default_factory=dict)  # generation -> when its `done` arrived


async def language_model(text: str, tokens_per_s: float, sent: list[float]) -> AsyncIterator[str]:
    """A stand-in for an LLM: words with their trailing space, at a steady rate."""
    for word in text.split(" "):
        await asyncio.sleep(1 / tokens_per_s)
        sent.append(time.perf_counter())
        yield word + " "


class Playback:
    """Plays frames in real time: on the sound card with --play, else by waiting out each frame."""

    def __init__(self, sample_rate: int, play: bool, realtime: bool = True) -> None:
        self.stream = None
        self.realtime = realtime
        if play:
            try:
                import sounddevice
            except (ImportError, OSError) as exc:
                sys.exit(f"--play needs sounddevice and PortAudio: {exc}")
            self.stream = sounddevice.RawOutputStream(samplerate=sample_rate, channels=1, dtype="int16")
            self.stream.start()

    async def play(self, frame: AudioFrame) -> None:
        if self.stream is not None:
            await asyncio.to_thread(self.stream.write, frame.data)
        elif self.realtime:
            await asyncio.sleep(frame.duration_ms / 1000)

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.abort()  # barge-in: what the card still holds is dropped too
            self.stream.start()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


async def listen(
    session: StreamerClient, playback: Playback, heard: Listener, until_generation: asyncio.Future[int]
) -> None:
    """The speaker: consumes everything the server sends, at the pace it is played."""
    async for message in session.events():
        if isinstance(message, AudioFrame):
            heard.first_audio_at = heard.first_audio_at or message.received_at
            heard.frames.append((message.received_at, message.generation))
            await playback.play(message)
            heard.played_ms += message.duration_ms
        elif message.type == "done":
            heard.done[message.generation or 0] = message.received_at
            if until_generation.done() and message.generation == until_generation.result():
                return
        elif message.type == "error":
            print(f"server error: {message['code']}: {message['message']}", file=sys.stderr)
            if message.get("fatal"):
                return


async def converse(args: argparse.Namespace) -> int:
    voice = {"voice": args.voice} if args.voice else {}
    async with StreamerClient.connect(args.url, api_key=args.api_key, format="pcm", **voice) as session:
        ready = session.ready
        assert ready is not None
        audio = session.audio_format
        print(
            f"connected: session {session.session_id[:8]}, {ready['engine']} voice {ready['voice']}, "
            f"{audio['format']} {audio['sample_rate']} Hz"
        )
        playback = Playback(audio["sample_rate"], args.play, realtime=not args.fast)
        heard = Listener()
        answer_generation: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        speaker = asyncio.create_task(listen(session, playback, heard, answer_generation))
        sent: list[float] = []
        barged_in = False

        async def reply() -> None:
            # flush=False: the speaker task reads the audio; the turn ends when the model does.
            finished = await session.stream(language_model(REPLY, args.tokens_per_s, sent), flush=False)
            if finished and not barged_in:
                await session.flush()

        print(f"assistant: streaming a reply at {args.tokens_per_s:g} tokens/s ...")
        model = asyncio.create_task(reply())
        try:
            await asyncio.sleep(args.barge_in)
            # The user speaks: stop the speaker, the model, and the server's speech.
            barged_in = True
            played_ms = heard.played_ms
            playback.stop()
            ack = await session.interrupt()
            acked_at = time.perf_counter()
            await asyncio.wait([model])
            if heard.first_audio_at and sent:
                print(
                    f"time to first audio: {(heard.first_audio_at - sent[0]) * 1000:.1f} ms "
                    "after the first token"
                )
            print(
                f"user barges in after {args.barge_in:g} s: {len(sent)} tokens sent, "
                f"{played_ms / 1000:.2f} s of audio played"
            )
            print(
                f"interrupt acknowledged in {ack.latency_ms:.1f} ms "
                f"(generation {ack['generation']}, last audio seq {ack['last_seq']})"
            )
            print(
                "audio of the interrupted reply dropped (queued or in flight): "
                f"{session.stats.dropped} messages"
            )

            answer_sent = time.perf_counter()
            answer_generation.set_result(session.generation)
            await session.send_text(ANSWER_AFTER_BARGE_IN, flush=True)
            await asyncio.wait_for(speaker, args.timeout)
        finally:
            for task in (model, speaker):
                task.cancel()
            await asyncio.wait([model, speaker])
            playback.close()

    stale = [g for at, g in heard.frames if at >= acked_at and g < ack["generation"]]
    answer = [at for at, g in heard.frames if g == ack["generation"]]
    if answer:
        print(
            f'assistant answers: "{ANSWER_AFTER_BARGE_IN}" '
            f"(first audio {(answer[0] - answer_sent) * 1000:.1f} ms after the text)"
        )
    stale_total = len(stale) + session.stats.stale_after_ack
    verdict = (
        f"every frame after the acknowledgement is of generation {ack['generation']}"
        if not stale_total
        else "the server broke its promise"
    )
    print(f"stale audio after the interrupt: {stale_total} frames ({verdict})")
    return 0 if not stale_total and answer else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--url",
        default=os.environ.get("STREAMER_WS_URL", "ws://127.0.0.1:8081/api/v1/stream"),
        help="streaming WebSocket URL (env STREAMER_WS_URL)",
    )
    p.add_argument("--api-key", default=os.environ.get("STREAMER_API_KEY"), help="env STREAMER_API_KEY")
    p.add_argument("--voice", help="voice name (default: the server's)")
    p.add_argument(
        "--barge-in", type=float, default=3.0, help="seconds before the user interrupts (default 3)"
    )
    p.add_argument("--tokens-per-s", type=float, default=25.0, help="the model's speed (default 25)")
    p.add_argument("--play", action="store_true", help="play through the sound card (sounddevice)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="take the audio as fast as it comes instead of at playing pace (CI)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="longest wait for the answer, in seconds")
    args = p.parse_args(argv)
    problem = stream_url_problem(args.url)
    if problem:
        print(f"voice_assistant: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(converse(args))
    except (ClientError, OSError, TimeoutError, InvalidURI) as exc:
        print(f"voice_assistant: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
