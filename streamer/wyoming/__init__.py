"""The Wyoming protocol (Home Assistant's voice pipeline): describe, synthesize, and streaming synthesis.

Flows, each on one TCP connection (events framed by the `wyoming` package):

    describe                                   -> info (our engines' voices; streaming supported)
    synthesize {text, voice?}                  -> audio-start, audio-chunk*, audio-stop
    synthesize-start {voice?}                  (a text stream begins: audio starts with its first chunk)
      synthesize-chunk {text}*                 -> audio-start, audio-chunk* as sentences complete
      synthesize {text}                        (sent by clients for compatibility: ignored mid-stream)
    synthesize-stop                            -> audio-chunk*, audio-stop, synthesize-stopped

Audio is 16-bit mono PCM at the voice's own rate, sent frame by frame as the pool makes it; the text
goes through the same chunker and worker pool as the WebSocket (so Wyoming clients and WebSocket
sessions share the pool fairly). A bad request gets an `error` event and the connection goes on.

Limits, like the WebSocket's: at most `server.max_connections` Wyoming connections (one more gets an
`overloaded` error and is closed); an event's header line, data and payload each at most
`limits.max_message_bytes`; a connection silent for `sessions.idle_timeout_s` is closed. An event that
cannot be framed (not JSON, no type, lengths too large, JSON nested too deeply) gets an `error` event
and the connection is closed, since the byte stream can no longer be trusted; a known event with a field
of the wrong type gets `invalid_field` and the connection goes on. Such mistakes are logged once per
connection, when it ends (`malformed_input` with a count), never per event and never with a traceback.

    framing.py   events off the socket, bounded, and the fields we act on checked
    server.py    the listening socket, and each connection's flows
"""

from .framing import FramingError, read_event
from .server import WyomingConnection, WyomingServer, info

__all__ = ["FramingError", "WyomingConnection", "WyomingServer", "info", "read_event"]
