"""Prometheus metrics: `GET /metrics` against a real server, and route templates on an inline app."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from streamer.observability.metrics import UNMATCHED_ROUTE, RequestMetricsMiddleware

from .conftest import ServerProcess
from .helpers import Client

LONG_TEXT = " ".join(["This sentence is here so that the turn lasts long enough to be interrupted."] * 12)


def scrape(server: ServerProcess, **headers: str) -> dict[str, list[Sample]]:
    response = httpx.get(f"{server.http_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    found = [s for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert found, f"no sample {name} with {labels} in {samples}"
    return sum(s.value for s in found)


async def test_metrics_after_rest_calls_and_an_interrupted_turn(espeak_server: ServerProcess) -> None:
    base = espeak_server.http_url
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/api/v1/status").status_code == 200
    for session_id in ("no-such-session-1", "no-such-session-2"):
        assert httpx.get(f"{base}/api/v1/sessions/{session_id}").status_code == 404

    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        turn = await client.say("Hello there. This is a short turn.")
        assert turn.data
        await client.send({"type": "text", "text": LONG_TEXT, "flush": True})
        await client.until("audio")
        await client.send({"type": "interrupt"})
        await client.until("interrupted")
        metrics = scrape(espeak_server)  # while the session is still connected

    requests = metrics["streamer_http_requests"]
    assert value(requests, "streamer_http_requests_total", route="/health", method="GET", status="200") >= 1
    # Labelled by the route's template, never by the raw path: ids don't become series.
    assert (
        value(
            requests,
            "streamer_http_requests_total",
            route="/api/v1/sessions/{session_id}",
            method="GET",
            status="404",
        )
        >= 2
    )
    assert not [s for s in requests if "no-such-session" in s.labels["route"]]

    latency = metrics["streamer_http_request_duration_seconds"]
    assert value(latency, "streamer_http_request_duration_seconds_count", route="/api/v1/status") >= 1
    assert value(latency, "streamer_http_request_duration_seconds_bucket", route="/api/v1/status", le="+Inf")

    ttfa = metrics["streamer_time_to_first_audio_seconds"]
    assert value(ttfa, "streamer_time_to_first_audio_seconds_count") >= 1
    assert {s.labels["le"] for s in ttfa if s.name.endswith("_bucket")} >= {"0.005", "5.0", "+Inf"}
    synth = metrics["streamer_chunk_synthesis_seconds"]
    assert value(synth, "streamer_chunk_synthesis_seconds_count", engine="espeak") >= 1
    assert value(synth, "streamer_chunk_synthesis_seconds_sum", engine="espeak") > 0
    assert value(metrics["streamer_real_time_factor"], "streamer_real_time_factor_count") >= 1
    assert value(metrics["streamer_chunk_queue_wait_seconds"], "streamer_chunk_queue_wait_seconds_count") >= 1

    assert value(metrics["streamer_queue_depth"], "streamer_queue_depth") >= 0
    assert 0 <= value(metrics["streamer_workers_busy"], "streamer_workers_busy") <= 2
    assert value(metrics["streamer_workers_ready"], "streamer_workers_ready") >= 1
    assert value(metrics["streamer_active_sessions"], "streamer_active_sessions") >= 1
    assert value(metrics["streamer_active_connections"], "streamer_active_connections") >= 1
    assert value(metrics["streamer_interrupts"], "streamer_interrupts_total") >= 1
    assert value(metrics["streamer_audio_bytes"], "streamer_audio_bytes_total") >= len(turn.data)
    assert value(metrics["streamer_turns"], "streamer_turns_total", outcome="done") >= 1
    assert value(metrics["streamer_turns"], "streamer_turns_total", outcome="interrupted") >= 1
    assert value(metrics["streamer_worker_restarts"], "streamer_worker_restarts_total") == 0
    assert "streamer_process_resident_memory_bytes" in metrics


def test_one_shot_syntheses_are_counted_by_path_and_outcome(espeak_server: ServerProcess) -> None:
    base = espeak_server.http_url
    before = scrape(espeak_server).get("streamer_oneshot_requests", [])

    def count(samples: list[Sample], path: str, outcome: str) -> float:
        found = [s for s in samples if s.name == "streamer_oneshot_requests_total"]
        return sum(s.value for s in found if s.labels == {"path": path, "outcome": outcome})

    synth = httpx.post(f"{base}/api/v1/synth", json={"text": "Counted once.", "format": "wav"}, timeout=30)
    speech = httpx.post(
        f"{base}/v1/audio/speech",
        json={"model": "tts-1", "input": "And once more.", "voice": "alloy"},
        timeout=30,
    )
    assert synth.status_code == 200 and speech.status_code == 200
    metrics = scrape(espeak_server)
    after = metrics["streamer_oneshot_requests"]
    assert count(after, "synth", "done") == count(before, "synth", "done") + 1
    assert count(after, "speech", "done") == count(before, "speech", "done") + 1
    ttfa = metrics["streamer_oneshot_time_to_first_audio_seconds"]
    assert value(ttfa, "streamer_oneshot_time_to_first_audio_seconds_count", path="synth") >= 1
    assert value(ttfa, "streamer_oneshot_time_to_first_audio_seconds_sum", path="speech") > 0


def test_metrics_speak_openmetrics_when_asked(espeak_server: ServerProcess) -> None:
    response = httpx.get(
        f"{espeak_server.http_url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


class _Recorder:
    """Stands in for Metrics: keeps what the middleware observed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append((method, route, status))


def _inline_app(recorder: _Recorder) -> TestClient:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def deny(scope: Any, receive: Any, send: Any) -> None:  # answers before the router runs
        await PlainTextResponse("no", status_code=401)(scope, receive, send)

    inner = Starlette(routes=[Route("/items/{item_id}", hello)])
    app = Starlette(
        routes=[
            Route("/things/{thing_id:int}", hello, methods=["GET"]),
            Mount("/inner", app=inner),
        ]
    )

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        target = deny if scope.get("path", "").startswith("/denied") else app
        await target(scope, receive, send)

    return TestClient(RequestMetricsMiddleware(outer, recorder, [*app.routes, Route("/denied/{x}", hello)]))  # type: ignore[arg-type]


def test_requests_are_labelled_by_route_template() -> None:
    recorder = _Recorder()
    with _inline_app(recorder) as client:
        assert client.get("/things/41").status_code == 200
        assert client.post("/things/42").status_code == 405
        assert client.get("/inner/items/abc").status_code == 200
        assert client.get("/nowhere/123").status_code == 404
        assert client.get("/denied/7").status_code == 401
    assert recorder.seen == [
        ("GET", "/things/{thing_id:int}", 200),
        ("POST", "/things/{thing_id:int}", 405),
        ("GET", "/inner/items/{item_id}", 200),
        ("GET", UNMATCHED_ROUTE, 404),
        ("GET", "/denied/{x}", 401),
    ]
