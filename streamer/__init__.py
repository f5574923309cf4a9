"""streamer: a real-time text-to-speech streaming server."""

__version__ = "0.1.0"
