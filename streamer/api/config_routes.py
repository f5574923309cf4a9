"""Configuration over REST: read (secrets masked), change live, reload from the file, save atomically."""

from __future__ import annotations

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config_manager import masked
from ..errors import ConfigSaveFailed
from .http import answer, by_method, read_object
from .models.answers import ConfigSaved, ConfigUpdated
from .system import runtime_of

log = structlog.get_logger(__name__)


async def get_config(request: Request) -> Response:
    # Not validated again as Settings: the masks are exactly what a setting may never hold.
    document = masked(runtime_of(request).config.running.model_dump(mode="json"))
    return Response(orjson.dumps(document), media_type="application/json")


async def update_config(request: Request) -> Response:
    outcome = runtime_of(request).config.update(await read_object(request))
    return answer(_updated("Configuration updated successfully", outcome))


async def reload_config(request: Request) -> Response:
    outcome = runtime_of(request).config.reload()
    return answer(_updated("Configuration reloaded successfully", outcome))


async def save_config(request: Request) -> Response:
    config = runtime_of(request).config
    try:
        path = config.save()
    except ConfigSaveFailed as exc:
        log.warning("config_save_failed", path=exc.details["path"], reason=exc.details["reason"])
        raise
    saved = ConfigSaved(
        message="Configuration saved successfully", path=str(path), restart_required=config.pending_restart
    )
    return answer(saved)


def _updated(message: str, outcome: dict[str, list[str]]) -> ConfigUpdated:
    if outcome["restart_required"]:
        message = (
            f"{message}; {', '.join(outcome['restart_required'])} take effect after a restart "
            "(POST /api/v1/config/save keeps them)"
        )
    return ConfigUpdated(message=message, **outcome)


routes = [
    by_method("/api/v1/config", GET=get_config, POST=update_config),
    Route("/api/v1/config/reload", reload_config, methods=["POST"]),
    Route("/api/v1/config/save", save_config, methods=["POST"]),
]
