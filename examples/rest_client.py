"""The REST API from Python, as in the API document's example: health, a session, metrics, config, voices.

    python examples/rest_client.py --url http://127.0.0.1:8080

Creates a session (then deletes it), so it also shows the session's WebSocket URL and resume token:
the session can be attached to with `StreamerClient.connect(ws_url, session_id=..., resume_token=...)`.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from streamer.client import RestClient, RestError


def tour(client: RestClient, language: str) -> None:
    health = client.health()
    print(f"Server status: {health['status']} (version {health['version']}, engine {health['engine']})")

    session = client.create_session({"language": language, "voice_id": 0, "format": "wav"})
    print(f"Session created: {session['session_id']}")
    print(f"  config: {session['config']}")
    print(f"  attach at {session['ws_url']} with its resume_token")
    details = client.get_session(session["session_id"])
    print(f"  generation {details['generation']}, connected: {details['connected']}")
    print(f"Sessions open: {client.list_sessions()['total']}")

    metrics = client.metrics()
    print(f"Total requests: {metrics['total_requests']} (average {metrics['average_latency_ms']} ms)")

    config = client.get_config()
    print(
        f"Config: engine {config['tts']['engine']}, default format {config['audio']['default_format']}, "
        f"ports {config['server']['http_port']}/{config['server']['websocket_port']}"
    )

    groups = client.voices(language=language)
    for group in groups:
        names = ", ".join(speaker["name"] for speaker in group["speakers"][:5])
        more = len(group["speakers"]) - 5
        names += f" and {more} more" if more > 0 else ""
        print(f"Voices for {group['name']} ({group['code']}, {group['engine']}): {names}")
    languages = client.languages()
    print(f"Languages: {len(languages['supported_languages'])} (default {languages['default_language']})")

    closed = client.delete_session(session["session_id"])
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
    try:
        with RestClient(args.url, api_key=args.api_key, verify=not args.insecure) as client:
            tour(client, args.language)
    except RestError as exc:
        print(f"rest_client: {exc} (request id {exc.request_id})", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"rest_client: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
