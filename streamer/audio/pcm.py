"""PCM helpers: float <-> s16le conversion, click-free chunk joins, and cutting blocks into frames."""

from __future__ import annotations

import numpy as np

# Symmetric scale: a full-scale float maps to ±32767 and back to exactly ±1.0, so round trips stay in [-1, 1].
_S16_SCALE = 32767.0


def float_to_s16le(block: np.ndarray) -> bytes:
    """Mono float samples in [-1, 1] (clipped if outside) as little-endian 16-bit PCM bytes."""
    scaled = np.clip(np.asarray(block, dtype=np.float32), -1.0, 1.0) * _S16_SCALE
    return np.rint(scaled).astype("<i2").tobytes()


def s16le_to_float(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes as float32 samples in [-1, 1]."""
    if len(data) % 2:
        raise ValueError(f"s16le data must have an even number of bytes, got {len(data)}")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(_S16_SCALE)).astype(np.float32)


def split_frames(block: np.ndarray, frame_samples: int) -> list[np.ndarray]:
    """Cut ``block`` into consecutive pieces of at most ``frame_samples`` samples (views, not copies)."""
    if frame_samples <= 0:
        raise ValueError(f"frame_samples must be positive, got {frame_samples}")
    return [block[start : start + frame_samples] for start in range(0, len(block), frame_samples)]


def _fade_in(length: int) -> np.ndarray:
    # Raised cosine that starts at exactly 0 and reaches 1 on the sample after the ramp.
    return (0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)).astype(np.float32)


def _fade_out(length: int) -> np.ndarray:
    # Mirror image: the last sample of the chunk is exactly 0, so the next chunk's fade-in meets silence.
    return (0.5 + 0.5 * np.cos(np.pi * np.arange(1, length + 1) / length)).astype(np.float32)


# The quiet kept after a chunk cut inside a phrase: a short gap between words, not a sentence's pause.
PHRASE_GAP_MS = 60.0
_QUIET = 10 ** (-45 / 20)  # -45 dBFS: below it a sample counts as quiet
_MAX_QUIET_MS = 400.0  # quiet held back at most this long (a longer pause is kept whole)


def _end_of_sound(samples: np.ndarray) -> int:
    """One past the last sample at or above the quiet threshold; 0 if there is none."""
    loud = np.flatnonzero(np.abs(samples) >= _QUIET)
    return int(loud[-1]) + 1 if len(loud) else 0


class ChunkShaper:
    """Fades each synthesized chunk in and out so joins between chunks never click.

    Engines start and stop chunks at arbitrary sample values; a step between two chunks is an audible
    click. The fade-in is applied as samples arrive; the fade-out needs the chunk's last samples, which
    are unknown until the chunk ends, so the shaper holds back one fade length (a few ms) and releases
    it, faded, in ``end_chunk()``. Samples out equal samples in, unless the chunk is started with
    ``tail_ms``: then the quiet after its last sound is cut to ``tail_ms`` (for a chunk cut inside a
    phrase, whose engine ends it with a sentence's pause). To know what is trailing quiet, the shaper
    holds back quiet samples until sound follows them or the chunk ends, at most ``_MAX_QUIET_MS``.

    Per chunk: ``start_chunk(rate)``, any number of ``process(block)``, then ``end_chunk()``.
    """

    def __init__(self, fade_ms: float = 4.0) -> None:
        if fade_ms < 0:
            raise ValueError(f"fade_ms must be >= 0, got {fade_ms}")
        self.fade_ms = fade_ms
        self._fade_len = 0
        self._fade_in = np.zeros(0, dtype=np.float32)
        self._seen = 0  # samples of the current chunk that have been through process()
        self._held = np.zeros(0, dtype=np.float32)
        self._open = False
        self._tail = -1  # samples of trailing quiet kept at the chunk's end; -1: keep it all
        self._max_quiet = 0

    @property
    def in_chunk(self) -> bool:
        return self._open

    def start_chunk(self, sample_rate: int, tail_ms: float | None = None) -> None:
        if self._open:
            raise RuntimeError("start_chunk() called before end_chunk() of the previous chunk")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self._fade_len = round(self.fade_ms * sample_rate / 1000.0)
        self._fade_in = _fade_in(self._fade_len)
        self._seen = 0
        self._held = np.zeros(0, dtype=np.float32)
        self._open = True
        self._tail = -1 if tail_ms is None else round(max(tail_ms, 0.0) * sample_rate / 1000.0)
        self._max_quiet = round(_MAX_QUIET_MS * sample_rate / 1000.0)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Return the samples of ``block`` (and earlier held ones) that may be sent now."""
        if not self._open:
            raise RuntimeError("process() called outside a chunk; call start_chunk() first")
        # np.array copies, so fading in place never touches the caller's array.
        samples = np.array(block, dtype=np.float32).reshape(-1)
        if self._seen < self._fade_len:
            ramp = self._fade_in[self._seen : self._seen + len(samples)]
            samples[: len(ramp)] *= ramp
        self._seen += len(samples)
        pending = np.concatenate((self._held, samples)) if len(self._held) else samples
        ready = max(len(pending) - self._fade_len, 0)
        if self._tail >= 0:  # keep the quiet after the last sound back: it may be the chunk's tail
            quiet = len(pending) - _end_of_sound(pending)
            ready = min(ready, max(len(pending) - quiet, len(pending) - self._max_quiet))
        self._held = pending[ready:]
        return pending[:ready]

    def end_chunk(self) -> np.ndarray:
        """Close the chunk and return the held-back tail, faded out to zero."""
        if not self._open:
            raise RuntimeError("end_chunk() called outside a chunk")
        held = self._held
        if self._tail >= 0:
            held = held[: _end_of_sound(held) + self._tail]
        tail = held * _fade_out(len(held)) if len(held) else held
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop any open chunk and its held samples (barge-in: the tail will never be played)."""
        self._held = np.zeros(0, dtype=np.float32)
        self._seen = 0
        self._open = False
