"""A client for streamer: speak text over the streaming WebSocket, barge in, and call the REST API.

    async with StreamerClient.connect("ws://127.0.0.1:8081/api/v1/stream", voice="en-us") as s:
        turn = await s.say("Hello there.")        # audio bytes, events, time to first audio
        turn = await s.stream(llm_tokens())       # text as it is produced, spoken as one turn
        ack = await s.interrupt()                 # barge-in: the `interrupted` event
        async for message in s.events(): ...      # AudioFrame and Event objects, as they arrive

    with RestClient("http://127.0.0.1:8080") as rest:
        rest.health(); rest.create_session(language="en", format="wav"); rest.interrupt_all()

Modules: ``stream`` (the WebSocket client and its generation tracking), ``messages`` (AudioFrame,
Event, Turn), ``rest`` (RestClient, AsyncRestClient), ``errors``.

Exceptions:

    ClientError
     ├── ServerError          an `error` event answering this client's request, or a fatal one
     ├── ConnectionClosed     the socket closed before the awaited reply (close code, reason)
     ├── InvalidURL           not a ws:// or wss:// URL (also a ValueError); names the URL meant
     ├── HandshakeRefused     the WebSocket handshake got an HTTP error (401: API key; 403/404: wrong path)
     └── RestError            an HTTP error answer (status, error_type, detail, request_id)

`RestClient` and `AsyncRestClient` need httpx (``pip install 'streamer[client]'``).
"""

from ._connect import stream_url_problem
from .errors import ClientError, ConnectionClosed, HandshakeRefused, InvalidURL, RestError, ServerError
from .messages import AudioFrame, ClientStats, Event, Message, Turn
from .rest import AsyncRestClient, RestClient
from .stream import StreamerClient

__all__ = [
    "AsyncRestClient",
    "AudioFrame",
    "ClientError",
    "ClientStats",
    "ConnectionClosed",
    "Event",
    "HandshakeRefused",
    "InvalidURL",
    "Message",
    "RestClient",
    "RestError",
    "ServerError",
    "StreamerClient",
    "Turn",
    "stream_url_problem",
]
