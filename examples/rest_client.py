"""The REST API from Python's standard library: health, a session, metrics, config, voices.

    python examples/rest_client.py --url http://127.0.0.1:8080

Plain HTTP and JSON through urllib, so it runs on the core install; `streamer.client.RestClient`
has a method for every route (it needs httpx: `pip install '.[client]'`). Creates a session (then
deletes it), so it also shows the session's WebSocket URL and resume token: the session can be
attached to with `StreamerClient.connect(ws_url, session_id=..., resume_token=...)`.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(Exception):
    """An HTTP error answer, with the fields of the server's error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.request_id = body.get("request_id")
        super().__init__(f"HTTP {status} {body.get('error_type', 'http_error')}: {body.get('detail')}")


class Api:
    def __init__(self, base_url: str, api_key: str | None, insecure: bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.context = None
        if insecure:
            self.context = ssl.create_default_context()
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path + query, data=data, headers=self.headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())
            except ValueError:
                error = {}
            raise ApiError(exc.code, error if isinstance(error, dict) else {}) from None


def tour(api: Api, language: str) -> None:
    health = api.call("GET", "/api/v1/health")
    print(f"Server status: {health['status']} (version {health['version']}, engine {health['engine']})")

    session = api.call("POST", "/api/v1/sessions", {"language": language, "voice_id": 0, "format": "wav"})
    session_id = session["session_id"]
    print(f"Session created: {session_id}")
    print(f"  config: {session['config']}")
    print(f"  attach at {session['ws_url']} with its resume_token")
    details = api.call("GET", f"/api/v1/sessions/{session_id}")
    print(f"  generation {details['generation']}, connected: {details['connected']}")
    print(f"Sessions open: {api.call('GET', '/api/v1/sessions')['total']}")

    metrics = api.call("GET", "/api/v1/metrics")
    print(f"Total requests: {metrics['total_requests']} (average {metrics['average_latency_ms']} ms)")

    config = api.call("GET", "/api/v1/config")
    print(
        f"Config: engine {config['tts']['engine']}, default format {config['audio']['default_format']}, "
        f"ports {config['server']['http_port']}/{config['server']['websocket_port']}"
    )

    for group in api.call("GET", "/api/v1/voices", language=language):
        names = ", ".join(speaker["name"] for speaker in group["speakers"][:5])
        more = len(group["speakers"]) - 5
        names += f" and {more} more" if more > 0 else ""
        print(f"Voices for {group['name']} ({group['code']}, {group['engine']}): {names}")
    languages = api.call("GET", "/api/v1/languages")
    print(f"Languages: {len(languages['supported_languages'])} (default {languages['default_language']})")

    closed = api.call("DELETE", f"/api/v1/sessions/{session_id}")
    print(f"Session closed: {closed['message']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--url",
        default=os.environ.get("STREAMER_URL", "http://127.0.0.1:8080"),
        help="REST base URL (env STREAMER_URL)",
    )
    p.add_argument("--api-key", default=os.environ.get("STREAMER_API_KEY"), help="env STREAMER_API_KEY")
    p.add_argument("--language", default="en", help="language of the session and the voices listed")
    p.add_argument("--insecure", action="store_true", help="https:// without certificate checks")
    args = p.parse_args(argv)
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https"):
        print(
            f"rest_client: --url takes the REST base URL, e.g. http://127.0.0.1:8080, not {args.url!r}",
            file=sys.stderr,
        )
        return 2
    try:
        tour(Api(args.url, args.api_key, args.insecure), args.language)
    except ApiError as exc:
        print(f"rest_client: {exc} (request id {exc.request_id})", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:  # refused, unresolvable, timed out, bad TLS
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"rest_client: cannot reach {args.url}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
