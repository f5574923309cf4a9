"""The offline API documentation pages: Swagger UI at /docs and ReDoc at /redoc, both reading /openapi.json.

The pages load nothing from another host. Their assets are vendored in ``docs_assets/`` (shipped in the
wheel, so a plain ``pip install`` works without network): Swagger UI from the npm package
``swagger-ui-dist`` (Apache-2.0) and ReDoc's ``bundles/redoc.standalone.js`` from the npm package ``redoc``
(MIT); versions, checksums and how to refresh them are in ``docs_assets/README.md``. PyPI offers no
maintained package of both (``swagger-ui-bundle`` ships Swagger UI 4, which cannot read OpenAPI 3.1).
The pages send a Content-Security-Policy limiting every fetch to this server: ReDoc 2 would otherwise
fetch its logo from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).parent / "docs_assets"

# Everything from this server: ReDoc's logo request to its CDN fails here instead of leaking.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)
_PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}

# Relative URLs: the pages work under any root path, and name no host at all.
SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>streamer API</title>
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-init.js"></script>
</body>
</html>
"""

REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>streamer API</title>
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body style="margin: 0">
<redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script>
</body>
</html>
"""


async def swagger_ui(request: Request) -> HTMLResponse:
    return HTMLResponse(SWAGGER_PAGE, headers=_PAGE_HEADERS)


async def redoc(request: Request) -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE, headers=_PAGE_HEADERS)


routes: list[BaseRoute] = [
    Route("/docs", swagger_ui, methods=["GET"], include_in_schema=False),
    Route("/redoc", redoc, methods=["GET"], include_in_schema=False),
    Mount("/docs/assets", app=StaticFiles(directory=ASSETS_DIR), name="docs_assets"),
]
