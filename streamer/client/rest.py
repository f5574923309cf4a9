"""The REST API from Python: `RestClient` (blocking) and `AsyncRestClient`, on httpx.

Every method returns the decoded JSON answer (bytes for ``synth``, text for ``prometheus_metrics``);
an HTTP error raises `RestError` with the fields of the server's error body. Failures to reach the
server raise httpx's own errors (``httpx.TransportError``).
"""

from __future__ import annotations

import ssl as ssl_module
from typing import Any

from ._tls import ssl_context
from .errors import RestError


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class _Routes:
    """Every REST route once; the blocking and the async client differ only in ``_request``."""

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        raw: bool = False,
        accept: tuple[int, ...] = (),
    ) -> Any:
        raise NotImplementedError

    # health and figures
    def health(self) -> Any:
        return self._request("GET", "/api/v1/health")

    def ready(self) -> Any:
        """``{"status": "ready" | "not_ready", "checks", "failing"}`` (a 503 is an answer, not an error)."""
        return self._request("GET", "/ready", accept=(503,))

    def status(self) -> Any:
        return self._request("GET", "/api/v1/status")

    def metrics(self) -> Any:
        return self._request("GET", "/api/v1/metrics")

    def prometheus_metrics(self) -> Any:
        """The Prometheus text exposition at ``/metrics``."""
        return self._request("GET", "/metrics", raw=True)

    # configuration
    def get_config(self) -> Any:
        return self._request("GET", "/api/v1/config")

    def update_config(self, changes: dict[str, Any]) -> Any:
        """Apply a partial configuration live, e.g. ``{"tts": {"default_speed": 1.2}}``."""
        return self._request("POST", "/api/v1/config", json=changes)

    def reload_config(self) -> Any:
        return self._request("POST", "/api/v1/config/reload")

    def save_config(self) -> Any:
        return self._request("POST", "/api/v1/config/save")

    # voices and engines
    def voices(self, engine: str | None = None, language: str | None = None) -> Any:
        return self._request("GET", "/api/v1/voices", params=_drop_none(engine=engine, language=language))

    def languages(self) -> Any:
        return self._request("GET", "/api/v1/languages")

    def engines(self, available_only: bool = False) -> Any:
        params = {"available_only": "true"} if available_only else None
        return self._request("GET", "/api/v1/engines", params=params)

    def engine(self, name: str) -> Any:
        return self._request("GET", f"/api/v1/engines/{name}")

    def engine_voices(self, name: str, language: str | None = None) -> Any:
        return self._request("GET", f"/api/v1/engines/{name}/voices", params=_drop_none(language=language))

    def formats(self) -> Any:
        return self._request("GET", "/api/v1/formats")

    # sessions and interrupts
    def create_session(self, config: dict[str, Any] | None = None, **fields: Any) -> Any:
        """A session to attach to over the WebSocket: the answer has ``session_id``, ``resume_token``
        and ``ws_url``. Settings as a dict (``{"language": "es", "voice_id": 0}``) or keywords."""
        return self._request("POST", "/api/v1/sessions", json={**(config or {}), **fields})

    def list_sessions(self, *, limit: int | None = None, offset: int = 0) -> Any:
        """One page of sessions (the server's default is 100), oldest first, with ``total`` and
        ``next_offset`` (null on the last page): pass that as ``offset`` for the next page."""
        params = {"offset": offset} | ({"limit": limit} if limit is not None else {})
        return self._request("GET", "/api/v1/sessions", params=params)

    def get_session(self, session_id: str) -> Any:
        return self._request("GET", f"/api/v1/sessions/{session_id}")

    def delete_session(self, session_id: str) -> Any:
        return self._request("DELETE", f"/api/v1/sessions/{session_id}")

    def interrupt(self, session_id: str) -> Any:
        return self._request("POST", f"/api/v1/interrupt/{session_id}")

    def interrupt_all(self) -> Any:
        return self._request("POST", "/api/v1/interrupt/all")

    # one-shot synthesis
    def synth(
        self,
        text: str,
        *,
        format: str = "wav",
        engine: str | None = None,
        voice: str | None = None,
        language: str | None = None,
        speed: float | None = None,
        sample_rate: int | None = None,
    ) -> Any:
        """The whole text as one audio file (bytes), from ``POST /api/v1/synth``."""
        body = _drop_none(
            text=text,
            format=format,
            engine=engine,
            voice=voice,
            lang=language,
            rate=speed,
            sample_rate=sample_rate,
        )
        return self._request("POST", "/api/v1/synth", json=body, raw=True)


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("the REST client needs httpx: pip install 'streamer[client]'") from exc
    return httpx


def _client_options(base_url: str, api_key: str | None, timeout: float, verify: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if isinstance(verify, str):
        verify = ssl_context(verify)  # httpx deprecates a path here
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout, "verify": verify}


def _answer(response: Any, raw: bool, accept: tuple[int, ...]) -> Any:
    if response.status_code >= 400 and response.status_code not in accept:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        raise RestError(
            response.status_code,
            body.get("error_type", "http_error"),
            body.get("detail", response.text),
            body.get("request_id") or response.headers.get("x-request-id"),
        )
    if not raw:
        return response.json()
    return response.text if response.headers.get("content-type", "").startswith("text/") else response.content


class RestClient(_Routes):
    """The REST API, blocking. Every method returns the decoded JSON answer (bytes for ``synth``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        verify: bool | str | ssl_module.SSLContext = True,
    ) -> None:
        self._http = _httpx().Client(**_client_options(base_url, api_key, timeout, verify))

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        raw: bool = False,
        accept: tuple[int, ...] = (),
    ) -> Any:
        return _answer(self._http.request(method, path, json=json, params=params), raw, accept)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRestClient(_Routes):
    """The REST API for asyncio: the methods of `RestClient`, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        verify: bool | str | ssl_module.SSLContext = True,
    ) -> None:
        self._http = _httpx().AsyncClient(**_client_options(base_url, api_key, timeout, verify))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        raw: bool = False,
        accept: tuple[int, ...] = (),
    ) -> Any:
        response = await self._http.request(method, path, json=json, params=params)
        return _answer(response, raw, accept)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
