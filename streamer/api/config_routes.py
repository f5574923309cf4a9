"""Configuration over REST: read (secrets masked), change live, reload from the file, save atomically."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..config_manager import masked
from .http import by_method, read_object
from .system import runtime_of


async def get_config(request: Request) -> JSONResponse:
    return JSONResponse(masked(runtime_of(request).config.running.model_dump()))


async def update_config(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    outcome = runtime.config.update(await read_object(request))
    return JSONResponse(_answer("Configuration updated successfully", outcome))


async def reload_config(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    outcome = runtime.config.reload()
    return JSONResponse(_answer("Configuration reloaded successfully", outcome))


async def save_config(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    path = runtime.config.save()
    return JSONResponse(
        {
            "status": "success",
            "message": "Configuration saved successfully",
            "path": str(path),
            "restart_required": runtime.config.pending_restart,
        }
    )


def _answer(message: str, outcome: dict[str, list[str]]) -> dict[str, object]:
    body: dict[str, object] = {"status": "success", "message": message, **outcome}
    if outcome["restart_required"]:
        body["message"] = (
            f"{message}; {', '.join(outcome['restart_required'])} take effect after a restart "
            "(POST /api/v1/config/save keeps them)"
        )
    return body


routes = [
    by_method("/api/v1/config", GET=get_config, POST=update_config),
    Route("/api/v1/config/reload", reload_config, methods=["POST"]),
    Route("/api/v1/config/save", save_config, methods=["POST"]),
]
