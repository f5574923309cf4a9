"""Streaming encoders: one per turn, float PCM in a frame at a time, bytes of a growing audio file out."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from streamer.audio.pcm import float_to_s16le
from streamer.protocol.fields import FORMATS

MIME_TYPES: dict[str, str] = {
    "pcm": "audio/L16",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}

# Codecs that only run at some rates. Every other format keeps the requested rate.
_ALLOWED_RATES: dict[str, tuple[int, ...]] = {
    "ogg": (8000, 12000, 16000, 24000, 48000),  # Opus
    "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),  # MPEG-1/2/2.5 layer III
    # The native AAC encoder refuses any other rate; mapping here beats failing mid-turn.
    "aac": (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
}


@dataclass(frozen=True, slots=True)
class _MuxedFormat:
    container: str
    codec: str
    bitrate: int | None  # default bit rate; None for lossless
    container_options: dict[str, str] = field(default_factory=dict)


_MUXED: dict[str, _MuxedFormat] = {
    # The Ogg muxer otherwise fills pages for ~1 s before writing; 20 ms pages go out per Opus packet.
    "ogg": _MuxedFormat("ogg", "libopus", 32_000, {"page_duration": "20000"}),
    # No ID3 tag: the stream is bare MPEG frames, which any player can join mid-way.
    "mp3": _MuxedFormat("mp3", "libmp3lame", 64_000, {"id3v2_version": "0"}),
    # The FLAC muxer reserves 8 KiB of padding for later tag edits that a stream never makes.
    "flac": _MuxedFormat("flac", "flac", None, {"metadata_header_padding": "0"}),
    "aac": _MuxedFormat("adts", "aac", 64_000),
}

# FLAC block sizes its frame header codes directly. The encoder's default (~105 ms) holds back two or three
# 40 ms frames before the first audio goes out; ~25 ms blocks cost about 3% in size and hold back none.
_FLAC_BLOCK_SIZES = (576, 1152, 2304, 4608)
_FLAC_BLOCK_SECONDS = 0.03


def _flac_block_size(sample_rate: int) -> int:
    fitting = [size for size in _FLAC_BLOCK_SIZES if size <= sample_rate * _FLAC_BLOCK_SECONDS]
    return fitting[-1] if fitting else _FLAC_BLOCK_SIZES[0]


# Sample formats that the codec takes without conversion from our float input, best first.
_PREFERRED_SAMPLE_FORMATS = ("flt", "fltp")


def output_sample_rate(fmt: str, requested: int) -> int:
    """The rate an encoder for ``fmt`` emits when ``requested`` Hz is asked for.

    Codecs with a fixed set of rates take the smallest one at or above the request (never upsampling
    past the top rate); other formats keep the request.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if requested <= 0:
        raise ValueError(f"sample rate must be positive, got {requested}")
    allowed = _ALLOWED_RATES.get(fmt)
    if allowed is None:
        return requested
    return next((rate for rate in allowed if rate >= requested), allowed[-1])


class _ByteSink:
    """A write-only file object for PyAV's muxer.

    It deliberately has no ``seek``/``tell``: FFmpeg then treats the output as a stream, never seeks
    back to patch headers, and flushes its I/O buffer after every packet, so bytes come out per frame.
    """

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, data: bytes) -> int:
        self._data += data
        return len(data)

    def drain(self) -> bytes:
        out = bytes(self._data)
        self._data.clear()
        return out


def _wav_header(sample_rate: int) -> bytes:
    # Streaming WAV: the RIFF and data sizes are unknown up front, so both say 0xFFFFFFFF ("until EOF").
    unknown = 0xFFFFFFFF
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", unknown, b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", unknown,
    )  # fmt: skip


class _RawBackend:
    """pcm and wav: resampled float written as s16le, after a WAV header if asked."""

    sample_format = "flt"

    def __init__(self, header: bytes = b"") -> None:
        self._out = bytearray(header)

    def feed(self, frame: av.AudioFrame | None) -> None:
        if frame is not None:
            self._out += float_to_s16le(frame.to_ndarray()[0])

    def finish(self) -> None:
        pass

    def drain(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def close(self) -> None:
        self._out.clear()


class _AvBackend:
    """A PyAV codec muxed into an in-memory, non-seekable container."""

    def __init__(self, spec: _MuxedFormat, sample_rate: int, bitrate: int | None) -> None:
        self._sink = _ByteSink()
        self._container = av.open(
            self._sink, mode="w", format=spec.container, container_options=spec.container_options
        )
        self._stream = self._container.add_stream(spec.codec, rate=sample_rate)
        codec_context = self._stream.codec_context
        codec_context.layout = "mono"
        supported = [f.name for f in codec_context.codec.audio_formats or ()]
        codec_context.format = next((f for f in _PREFERRED_SAMPLE_FORMATS if f in supported), supported[0])
        if bitrate is not None:
            codec_context.bit_rate = bitrate
        if spec.codec == "flac":
            codec_context.options = {"frame_size": str(_flac_block_size(sample_rate))}
        self.sample_format = codec_context.format.name
        # Write the header now, so the client gets it with the first encode() and can set up its decoder.
        self._container.start_encoding()

    def feed(self, frame: av.AudioFrame | None) -> None:
        # None drains the codec (and PyAV's re-chunking FIFO in front of it).
        self._container.mux(self._stream.encode(frame))

    def finish(self) -> None:
        self.feed(None)
        self._container.close()  # writes the trailer

    def drain(self) -> bytes:
        return self._sink.drain()

    def close(self) -> None:
        self._container.close()
        self._sink.drain()


class StreamingEncoder:
    """Encodes one turn of speech as a stream of bytes that, concatenated, form one complete file.

    ``encode()`` takes mono float32 PCM at the engine's rate, which may change between calls (a voice
    change mid-turn); ``flush()`` ends the turn; ``close()`` abandons it (barge-in). Each returns the
    bytes produced since the previous call, possibly ``b""``.
    """

    def __init__(self, fmt: str, sample_rate: int, *, bitrate: int | None = None) -> None:
        self.sample_rate = output_sample_rate(fmt, sample_rate)  # validates fmt
        self.format = fmt
        self.channels = 1
        self.mime_type = MIME_TYPES[fmt]
        self.samples_in = 0  # input samples received, at whatever rates they came
        self.seconds_in = 0.0  # audio time received
        self.samples_out = 0  # samples at self.sample_rate handed to the codec
        self.bytes_out = 0
        spec = _MUXED.get(fmt)
        # Lossless formats have no bit rate to set; a requested one is ignored.
        self.bitrate: int | None = (bitrate or spec.bitrate) if spec and spec.bitrate else None
        self._backend: _RawBackend | _AvBackend
        if spec is None:
            self._backend = _RawBackend(_wav_header(self.sample_rate) if fmt == "wav" else b"")
        else:
            self._backend = _AvBackend(spec, self.sample_rate, self.bitrate)
        self._time_base = Fraction(1, self.sample_rate)
        self._resampler: av.AudioResampler | None = None
        self._input_rate: int | None = None
        self._state = "open"  # -> "flushed" | "closed"

    def encode(self, pcm: np.ndarray, input_rate: int) -> bytes:
        """Feed mono float PCM at ``input_rate`` Hz; return the bytes the stream has produced since."""
        self._check_open("encode")
        if input_rate <= 0:
            raise ValueError(f"input_rate must be positive, got {input_rate}")
        # nan_to_num: one bad block from an engine must not poison the codec's state for the rest of the turn.
        samples = np.clip(np.nan_to_num(np.asarray(pcm, dtype=np.float32).reshape(-1)), -1.0, 1.0)
        if len(samples) == 0:
            return self._drain()
        frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = input_rate
        self.samples_in += len(samples)
        self.seconds_in += len(samples) / input_rate
        self._feed(self._resampler_for(input_rate).resample(frame))
        return self._drain()

    def flush(self) -> bytes:
        """End the turn: drain resampler and codec, write the trailer, return the last bytes."""
        self._check_open("flush")
        self._flush_resampler()
        self._backend.finish()
        self._state = "flushed"
        return self._drain()

    def close(self) -> None:
        """Abandon the turn without flushing; safe to call more than once."""
        if self._state == "open":
            self._backend.close()
        self._state = "closed"

    @property
    def closed(self) -> bool:
        return self._state != "open"

    def _check_open(self, method: str) -> None:
        if self._state != "open":
            raise RuntimeError(f"{method}() on a {self._state} {self.format} encoder")

    def _resampler_for(self, input_rate: int) -> av.AudioResampler:
        if self._resampler is None or input_rate != self._input_rate:
            # The old resampler still holds its filter delay: push it into the stream before switching.
            self._flush_resampler()
            self._resampler = av.AudioResampler(
                format=self._backend.sample_format, layout="mono", rate=self.sample_rate
            )
            self._input_rate = input_rate
        return self._resampler

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._feed(self._resampler.resample(None))
            self._resampler = None
            self._input_rate = None

    def _feed(self, frames: list[av.AudioFrame | None]) -> None:
        for frame in frames:
            if frame is None:  # a pass-through resampler answers a flush with [None]
                continue
            # Timestamps count output samples, so they stay monotonic across resampler swaps.
            frame.pts = self.samples_out
            frame.time_base = self._time_base
            self.samples_out += frame.samples
            self._backend.feed(frame)

    def _drain(self) -> bytes:
        data = self._backend.drain()
        self.bytes_out += len(data)
        return data

    def __repr__(self) -> str:
        return f"<StreamingEncoder {self.format} {self.sample_rate} Hz {self._state}>"
