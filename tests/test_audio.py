"""Audio: PCM helpers, chunk shaping, and every streaming encoder decoded back with PyAV."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from streamer.audio import (
    FORMATS,
    MIME_TYPES,
    ChunkShaper,
    StreamingEncoder,
    float_to_s16le,
    output_sample_rate,
    s16le_to_float,
    split_frames,
)

RATE = 22050
FRAME = RATE // 25  # 40 ms, the size the server feeds the encoder
FUNDAMENTAL = 140.0

# Samples a lossy codec may add around the audio (encoder delay plus padding to whole frames), in decoded
# samples at the output rate: LAME adds ~1105 of delay and pads the last 1152-sample frame; the ADTS stream
# carries AAC's 1024 priming samples (no edit list to strip them) and pads the last 1024-sample frame.
_CODEC_PADDING = {"mp3": 3 * 1152, "aac": 3 * 1024}
_LOSSLESS = ("pcm", "wav", "flac")


def speech_like(n: int, rate: int, start: int = 0) -> np.ndarray:
    """Voiced-sounding: a harmonic-rich tone under a syllable-rate envelope, with a little breath noise."""
    t = (np.arange(n) + start) / rate
    harmonics = sum(np.sin(2 * np.pi * FUNDAMENTAL * k * t) / k for k in range(1, 9))
    envelope = 0.55 + 0.4 * np.sin(2 * np.pi * 4.0 * t)
    noise = np.random.default_rng(start).standard_normal(n) * 0.01
    return (0.3 * harmonics * envelope + noise).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def run_turn(
    fmt: str, segments: list[tuple[int, float]], requested_rate: int = RATE, bitrate: int | None = None
) -> tuple[StreamingEncoder, bytes, list[int]]:
    """Feed (rate, seconds) segments in 40 ms frames; return the encoder, all bytes, and each return size."""
    encoder = StreamingEncoder(fmt, requested_rate, bitrate=bitrate)
    chunks: list[bytes] = []
    for input_rate, seconds in segments:
        signal = speech_like(round(input_rate * seconds), input_rate)
        for frame in split_frames(signal, input_rate // 25):
            chunks.append(encoder.encode(frame, input_rate))
    chunks.append(encoder.flush())
    return encoder, b"".join(chunks), [len(c) for c in chunks]


def decode(fmt: str, data: bytes, rate: int) -> tuple[np.ndarray, int]:
    """Decode a whole stream to mono float32 and its sample rate."""
    if fmt == "pcm":
        return s16le_to_float(data), rate
    to_float = av.AudioResampler(format="flt", layout="mono")
    blocks: list[np.ndarray] = []
    decoded_rate = 0
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            decoded_rate = frame.sample_rate
            blocks.extend(f.to_ndarray()[0] for f in to_float.resample(frame) if f is not None)
    blocks.extend(f.to_ndarray()[0] for f in to_float.resample(None) if f is not None)
    return np.concatenate(blocks), decoded_rate


def assert_duration(fmt: str, samples: int, decoded_rate: int, output_rate: int, expected: float) -> None:
    duration = samples / decoded_rate
    padding = _CODEC_PADDING.get(fmt, 0) / output_rate
    assert expected * 0.99 <= duration <= expected * 1.01 + padding, (fmt, duration, expected)


# --- PCM helpers -------------------------------------------------------------------------------------------


def test_s16_round_trip_is_within_half_a_step() -> None:
    x = np.random.default_rng(1).uniform(-1.0, 1.0, 5000).astype(np.float32)
    back = s16le_to_float(float_to_s16le(x))
    assert back.dtype == np.float32
    assert np.max(np.abs(back - x)) <= 0.5 / 32767 + 1e-7


def test_s16_is_little_endian_and_clipped() -> None:
    data = float_to_s16le(np.array([1.0, -1.0, 0.0, 3.0, -7.0], dtype=np.float32))
    assert struct.unpack("<5h", data) == (32767, -32767, 0, 32767, -32767)
    assert float_to_s16le(np.zeros(0, dtype=np.float32)) == b""
    with pytest.raises(ValueError):
        s16le_to_float(b"\x00\x01\x02")


def test_split_frames_covers_the_block_in_order() -> None:
    block = np.arange(1000, dtype=np.float32)
    frames = split_frames(block, 300)
    assert [len(f) for f in frames] == [300, 300, 300, 100]
    assert np.array_equal(np.concatenate(frames), block)
    assert split_frames(np.zeros(0, dtype=np.float32), 300) == []
    with pytest.raises(ValueError):
        split_frames(block, 0)


# --- ChunkShaper -----------------------------------------------------------------------------------------


def shape(shaper: ChunkShaper, blocks: list[np.ndarray], rate: int = RATE) -> np.ndarray:
    shaper.start_chunk(rate)
    out = [shaper.process(b) for b in blocks]
    out.append(shaper.end_chunk())
    return np.concatenate(out)


@pytest.mark.parametrize("sizes", [[1000], [3, 50, 1, 0, 200, 7], [10], [0], [], [88, 88], [500, 0, 2]])
def test_chunk_shaper_conserves_samples(sizes: list[int]) -> None:
    shaper = ChunkShaper()
    blocks = [np.full(n, 0.5, dtype=np.float32) for n in sizes]
    out = shape(shaper, blocks)
    assert len(out) == sum(sizes)
    assert out.dtype == np.float32


def test_chunk_shaper_fades_a_dc_block_at_both_ends_and_leaves_the_middle() -> None:
    shaper = ChunkShaper(fade_ms=4.0)
    fade = round(0.004 * RATE)
    block = np.full(2000, 0.8, dtype=np.float32)
    out = shape(shaper, [block])
    assert abs(out[0]) < 1e-6 and abs(out[-1]) < 1e-6
    assert np.all(np.diff(out[:fade]) > 0) and np.all(np.diff(out[-fade:]) < 0)  # smooth ramps, no steps
    assert np.array_equal(out[fade:-fade], block[fade:-fade])
    assert np.all(block == np.float32(0.8))  # the caller's array is not modified


def test_chunk_shaper_holds_back_only_the_fade_length() -> None:
    shaper = ChunkShaper(fade_ms=4.0)
    fade = round(0.004 * RATE)
    shaper.start_chunk(RATE)
    assert len(shaper.process(np.ones(10, dtype=np.float32))) == 0  # shorter than the fade: all held
    assert len(shaper.process(np.ones(500, dtype=np.float32))) == 510 - fade
    assert len(shaper.end_chunk()) == fade


def test_chunk_shaper_short_chunk_still_starts_and_ends_at_zero() -> None:
    out = shape(ChunkShaper(), [np.full(30, 0.9, dtype=np.float32)])
    assert len(out) == 30
    assert abs(out[0]) < 1e-6 and abs(out[-1]) < 1e-6


def test_chunk_shaper_join_of_two_sine_chunks_has_no_click() -> None:
    freq, amp = 220.0, 0.8
    t = np.arange(RATE // 2) / RATE
    first = (amp * np.sin(2 * np.pi * freq * t + 1.3)).astype(np.float32)  # ends mid-swing
    second = (amp * np.sin(2 * np.pi * freq * t - 1.9)).astype(np.float32)  # starts on the other side
    raw_jump = abs(float(second[0]) - float(first[-1]))
    assert raw_jump > 1.0  # without shaping this join clicks

    shaper = ChunkShaper()
    joined = np.concatenate([shape(shaper, list(split_frames(first, 441))), shape(shaper, [second])])
    natural_step = 2 * np.pi * freq / RATE * amp  # the sine's own largest sample-to-sample change
    assert np.max(np.abs(np.diff(joined))) < 1.5 * natural_step


def speech_then_quiet(sound_ms: float, quiet_ms: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(sound_ms * rate / 1000)) / rate
    sound = (0.5 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    quiet = np.random.default_rng(1).normal(0, 1e-4, round(quiet_ms * rate / 1000)).astype(np.float32)
    return np.concatenate([sound, quiet])  # the engine's phrase-final pause, with a little noise


@pytest.mark.parametrize("block", [0, 441, 1000, 7])
def test_chunk_shaper_cuts_a_chunks_trailing_quiet_to_the_tail_asked(block: int) -> None:
    audio = speech_then_quiet(500, 250)
    blocks = list(split_frames(audio, block)) if block else [audio]
    shaper = ChunkShaper()
    shaper.start_chunk(RATE, tail_ms=60)
    out = np.concatenate([*(shaper.process(b) for b in blocks), shaper.end_chunk()])
    sound = round(0.5 * RATE)
    assert len(out) == sound + round(0.06 * RATE)  # 250 ms of quiet cut to 60
    assert np.array_equal(out[500 : sound - 500], audio[500 : sound - 500])  # the sound itself is untouched
    assert abs(out[-1]) < 1e-6
    # without tail_ms every sample stays
    assert len(shape(ChunkShaper(), blocks)) == len(audio)


def test_chunk_shaper_keeps_pauses_inside_a_chunk_and_a_long_tail_past_the_hold_limit() -> None:
    inner = np.concatenate([speech_then_quiet(300, 200), speech_then_quiet(300, 100)])
    shaper = ChunkShaper()
    shaper.start_chunk(RATE, tail_ms=60)
    out = np.concatenate([*(shaper.process(b) for b in split_frames(inner, 441)), shaper.end_chunk()])
    assert len(out) == len(inner) - round(0.04 * RATE)  # only the final 100 ms became 60; the 200 ms stay
    # quiet is held back at most 400 ms: a 1 s tail releases 600 ms as it comes, and 60 ms more at the end
    long_tail = speech_then_quiet(200, 1000)
    shaper.start_chunk(RATE, tail_ms=60)
    sent = [shaper.process(b) for b in split_frames(long_tail, 441)]
    assert sum(map(len, sent)) >= len(long_tail) - round(0.4 * RATE)
    assert len(shaper.end_chunk()) == round(0.06 * RATE)


def test_chunk_shaper_rejects_misuse() -> None:
    shaper = ChunkShaper()
    with pytest.raises(RuntimeError):
        shaper.process(np.zeros(4, dtype=np.float32))
    with pytest.raises(RuntimeError):
        shaper.end_chunk()
    shaper.start_chunk(RATE)
    with pytest.raises(RuntimeError):
        shaper.start_chunk(RATE)
    shaper.reset()  # barge-in: the open chunk is dropped
    shaper.start_chunk(16000)
    assert len(shaper.end_chunk()) == 0


# --- output_sample_rate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "requested", "expected"),
    [
        ("ogg", 22050, 24000),
        ("ogg", 24000, 24000),
        ("ogg", 16000, 16000),
        ("ogg", 44100, 48000),
        ("ogg", 96000, 48000),
        ("ogg", 7000, 8000),
        ("mp3", 22050, 22050),
        ("mp3", 23000, 24000),
        ("mp3", 44100, 44100),
        ("mp3", 96000, 48000),
        ("aac", 22050, 22050),
        ("aac", 23000, 24000),
        ("pcm", 22050, 22050),
        ("wav", 23456, 23456),
        ("flac", 44100, 44100),
    ],
)
def test_output_sample_rate(fmt: str, requested: int, expected: int) -> None:
    assert output_sample_rate(fmt, requested) == expected


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError):
        output_sample_rate("opus", 24000)
    with pytest.raises(ValueError):
        StreamingEncoder("m4a", 24000)


# --- StreamingEncoder ------------------------------------------------------------------------------------


def test_every_format_has_a_mime_type() -> None:
    assert set(MIME_TYPES) == set(FORMATS)
    for fmt in FORMATS:
        encoder = StreamingEncoder(fmt, RATE)
        assert encoder.mime_type == MIME_TYPES[fmt]
        assert (encoder.format, encoder.channels) == (fmt, 1)
        encoder.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_turn_decodes_to_the_input_duration_and_signal(fmt: str) -> None:
    seconds = 2.0
    encoder, data, sizes = run_turn(fmt, [(RATE, seconds)])
    decoded, decoded_rate = decode(fmt, data, encoder.sample_rate)

    assert_duration(fmt, len(decoded), decoded_rate, encoder.sample_rate, seconds)
    reference = speech_like(round(RATE * seconds), RATE)
    assert rms(decoded) > 0.5 * rms(reference)
    # The voice's pitch survives: the strongest spectral line is the fundamental.
    spectrum = np.abs(np.fft.rfft(decoded))
    peak_hz = np.argmax(spectrum) * decoded_rate / len(decoded)
    assert abs(peak_hz - FUNDAMENTAL) < 2.0
    assert encoder.samples_in == len(reference)
    assert encoder.bytes_out == len(data) == sum(sizes)


@pytest.mark.parametrize("fmt", _LOSSLESS)
def test_lossless_formats_reproduce_the_samples(fmt: str) -> None:
    encoder, data, _ = run_turn(fmt, [(RATE, 1.0)])
    decoded, _ = decode(fmt, data, encoder.sample_rate)
    reference = speech_like(RATE, RATE)
    assert len(decoded) == len(reference)
    assert np.max(np.abs(decoded - reference)) < 2.0 / 32767


@pytest.mark.parametrize("fmt", FORMATS)
def test_first_audio_comes_out_within_three_frames(fmt: str) -> None:
    encoder = StreamingEncoder(fmt, RATE)
    # An empty encode() returns the container header alone, for the formats that have one.
    header = encoder.encode(np.zeros(0, dtype=np.float32), RATE)
    assert (len(header) > 0) == (fmt in ("wav", "ogg", "flac"))
    sizes = [len(encoder.encode(frame, RATE)) for frame in split_frames(speech_like(RATE // 2, RATE), FRAME)]
    encoder.close()
    first_audio = next(i for i, size in enumerate(sizes) if size > 0)
    assert first_audio <= 2, sizes[:6]  # index 2 is the third 40 ms frame
    assert sum(1 for size in sizes if size > 0) > len(sizes) // 2  # then it keeps flowing, not all at flush


@pytest.mark.parametrize("fmt", FORMATS)
def test_input_rate_change_mid_turn_keeps_the_duration(fmt: str) -> None:
    # 24000 Hz is also the output rate for every format here, so that segment runs through a pass-through
    # resampler for pcm/wav/ogg, whose flush on the next switch must be handled too.
    segments = [(22050, 0.6), (44100, 0.6), (24000, 0.6), (16000, 0.6)]
    encoder, data, _ = run_turn(fmt, segments, requested_rate=24000)
    decoded, decoded_rate = decode(fmt, data, encoder.sample_rate)
    assert_duration(fmt, len(decoded), decoded_rate, encoder.sample_rate, 2.4)
    assert rms(decoded) > 0.05
    assert encoder.seconds_in == pytest.approx(2.4)
    if fmt == "pcm":
        # Each old resampler's tail was flushed into the stream: not one output sample lost at a switch.
        assert len(decoded) == encoder.samples_out == round(2.4 * 24000)


def test_wav_starts_with_a_streaming_header() -> None:
    encoder = StreamingEncoder("wav", 16000)
    data = encoder.encode(np.zeros(640, dtype=np.float32), 16000)
    riff, riff_size, wave, _, _, tag, channels, rate, byte_rate = struct.unpack("<4sI4s4sIHHII", data[:32])
    assert (riff, wave, tag, channels, rate, byte_rate) == (b"RIFF", b"WAVE", 1, 1, 16000, 32000)
    assert riff_size == 0xFFFFFFFF
    assert data[36:44] == b"data" + b"\xff\xff\xff\xff"
    assert len(data) == 44 + 2 * 640


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_input_is_harmless(fmt: str) -> None:
    encoder = StreamingEncoder(fmt, RATE)
    encoder.encode(np.zeros(0, dtype=np.float32), RATE)
    encoder.flush()
    assert encoder.samples_out == 0
    assert encoder.closed


@pytest.mark.parametrize("fmt", ["pcm", "ogg", "aac"])
def test_non_finite_samples_are_silenced_not_fatal(fmt: str) -> None:
    encoder = StreamingEncoder(fmt, RATE)
    bad = speech_like(FRAME, RATE)
    bad[::7] = np.nan
    bad[3] = np.inf
    data = b"".join(encoder.encode(bad, RATE) for _ in range(10)) + encoder.flush()
    decoded, _ = decode(fmt, data, encoder.sample_rate)
    assert np.all(np.isfinite(decoded)) and rms(decoded) > 0.05
    if fmt == "pcm":  # same rate in and out: samples pass straight through, so the NaNs became exact zeros
        assert np.all(decoded[: len(bad)][::7] == 0.0) and decoded[3] == 1.0


def test_bitrate_is_applied() -> None:
    sizes = {}
    for bitrate in (32_000, 128_000):
        encoder, data, _ = run_turn("mp3", [(RATE, 1.0)], bitrate=bitrate)
        assert encoder.bitrate == bitrate
        sizes[bitrate] = len(data)
    assert sizes[128_000] > 2.5 * sizes[32_000]
    assert StreamingEncoder("flac", RATE, bitrate=64_000).bitrate is None
    assert StreamingEncoder("ogg", RATE).bitrate == 32_000


@pytest.mark.parametrize("fmt", FORMATS)
def test_use_after_close_or_flush_raises(fmt: str) -> None:
    encoder = StreamingEncoder(fmt, RATE)
    encoder.encode(speech_like(FRAME, RATE), RATE)
    encoder.close()
    encoder.close()  # idempotent
    with pytest.raises(RuntimeError):
        encoder.encode(speech_like(FRAME, RATE), RATE)
    with pytest.raises(RuntimeError):
        encoder.flush()

    flushed = StreamingEncoder(fmt, RATE)
    flushed.encode(speech_like(FRAME, RATE), RATE)
    flushed.flush()
    with pytest.raises(RuntimeError):
        flushed.encode(speech_like(FRAME, RATE), RATE)
    with pytest.raises(RuntimeError):
        flushed.flush()
    flushed.close()  # closing a finished encoder is fine
