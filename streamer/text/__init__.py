"""Text handling between the protocol and synthesis: chunking streamed text into speakable pieces."""

from streamer.text.chunker import Chunk, Chunker
from streamer.text.normalize import normalize

__all__ = ["Chunk", "Chunker", "normalize"]
