"""The browser demo: the static files of web/ served at /demo/, and / sending a browser there."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def web_dir(package: Path = PACKAGE_DIR) -> Path | None:
    """web/ as an installed wheel ships it (streamer/_web) or, failing that, a source checkout's."""
    for candidate in (package / "_web", package.parent / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


async def to_demo(request: Request) -> RedirectResponse:
    # url_for keeps the root path of a proxy that mounts the server under a prefix.
    return RedirectResponse(request.url_for("demo", path="/"), status_code=307)


async def _not_installed(scope: Scope, receive: Receive, send: Send) -> None:
    raise HTTPException(404, "the demo page is not installed with this server (web/ was not found)")


def _routes() -> list[BaseRoute]:
    directory = web_dir()
    files = StaticFiles(directory=directory, html=True) if directory is not None else _not_installed
    return [
        Route("/", to_demo, methods=["GET", "HEAD"]),
        Route("/demo", to_demo, methods=["GET", "HEAD"]),
        Mount("/demo", app=files, name="demo"),
    ]


routes = _routes()
