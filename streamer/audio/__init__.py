"""Audio: PCM helpers, click-free chunk shaping, and streaming encoders (PyAV) for every output format."""

from streamer.audio.encoders import MIME_TYPES, StreamingEncoder, output_sample_rate
from streamer.audio.pcm import PHRASE_GAP_MS, ChunkShaper, float_to_s16le, s16le_to_float, split_frames
from streamer.protocol.fields import FORMATS  # the formats every encoder here writes

__all__ = [
    "FORMATS",
    "MIME_TYPES",
    "PHRASE_GAP_MS",
    "ChunkShaper",
    "StreamingEncoder",
    "float_to_s16le",
    "output_sample_rate",
    "s16le_to_float",
    "split_frames",
]
