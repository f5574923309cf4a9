"""Text handling between the protocol and synthesis: chunking streamed text into speakable pieces."""

from streamer.text.chunker import Chunk, Chunker

__all__ = ["Chunk", "Chunker"]
