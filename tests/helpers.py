"""Test helpers: a thin protocol client over `websockets`, and audio decoding with PyAV."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any

import av
import msgpack
import numpy as np
import orjson
import websockets

from .conftest import TIMESCALE


def decode_message(raw: str | bytes) -> dict[str, Any]:
    return orjson.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)


@dataclass
class Turn:
    """Everything received up to one `done`."""

    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def audio(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "audio"]

    @property
    def data(self) -> bytes:
        return b"".join(e["data"] for e in self.audio)

    @property
    def done(self) -> dict[str, Any]:
        return self.events[-1]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


class Client:
    def __init__(self, ws: Any, binary: bool = False) -> None:
        self.ws = ws
        self.binary = binary
        self.ready: dict[str, Any] | None = None

    @classmethod
    async def connect(cls, url: str, binary: bool = False, **kwargs: Any) -> Client:
        ws = await websockets.connect(url, max_size=None, **kwargs)
        return cls(ws, binary)

    async def send(self, message: dict[str, Any], binary: bool | None = None) -> None:
        binary = self.binary if binary is None else binary
        await self.ws.send(msgpack.packb(message) if binary else orjson.dumps(message).decode())

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout * TIMESCALE)
        return decode_message(raw)

    async def start(self, **config: Any) -> dict[str, Any]:
        await self.send({"type": "start", "config": config} if config else {"type": "start"})
        self.ready = await self.expect("ready")
        return self.ready

    async def expect(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        message = await self.recv(timeout)
        assert message["type"] == kind, message
        return message

    async def until(self, kind: str, timeout: float = 20) -> Turn:
        """Receive until a message of ``kind`` (included)."""
        turn = Turn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout * TIMESCALE
        while True:
            message = await self.recv(max(0.01, deadline - loop.time()) / TIMESCALE)
            turn.events.append(message)
            if message["type"] == kind:
                return turn

    async def say(self, text: str, timeout: float = 30) -> Turn:
        await self.send({"type": "text", "text": text, "flush": True})
        return await self.until("done", timeout)

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def decode_audio(
    data: bytes, fmt: str | None = None, sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate, decoded with PyAV (raw pcm is taken as s16le)."""
    if fmt == "pcm":
        assert sample_rate is not None
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, sample_rate
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        pieces = []
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            scale = 32768.0 if array.dtype == np.int16 else 1.0
            # Planar frames are (channels, n); packed mono is (1, n): mono either way here.
            pieces.append(array[0].astype(np.float32) / scale)
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), rate


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
