"""What `serve` and `config check` check beyond the schema: the engine can run, the default voice exists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..engines.catalog import Catalog
    from ..runtime import Runtime


def engine_choice(catalog: Catalog, requested: str) -> str:
    """One line: the engine sessions get, and for ``auto`` why each engine it passed over was skipped,
    e.g. ``piper (tts.engine: auto; skipped melo: no model files)``."""
    chosen = catalog.default_engine
    skipped = "".join(f"; skipped {name}: {reason}" for name, reason in catalog.errors.items())
    return f"{chosen} (tts.engine: {requested}{skipped if requested == 'auto' else ''})"


def default_voice_problem(catalog: Catalog, settings: Settings) -> str | None:
    """Why ``tts.default_voice`` names no voice of the default engine (sessions would silently get
    another voice), with the command that lists the right ones; None when it is unset or found."""
    voice = settings.tts.default_voice
    engine = catalog.default_engine
    if voice is None or catalog.find(engine, voice) is not None:
        return None
    command = f"`streamer voices --engine {engine}`"
    hint = f"{command} lists them"
    owners = [name for name in sorted(catalog.engines) if name != engine and catalog.find(name, voice)]
    if owners:
        hint = f"it is a {owners[0]} voice: set tts.engine: {owners[0]}, or pick one that {command} lists"
    requested = settings.tts.engine
    return f"tts.default_voice: no voice {voice!r} in engine {engine} (tts.engine: {requested}); {hint}"


def checked_runtime(
    settings: Settings, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> Runtime:
    """The server's runtime (nothing started yet) once ``tts.engine`` can run and ``tts.default_voice``
    exists; ConfigError, one line, otherwise."""
    from ..runtime import Runtime

    runtime = Runtime(settings, config_path, overrides)  # raises ConfigError when tts.engine cannot run
    problem = default_voice_problem(runtime.catalog, settings)
    if problem:
        raise ConfigError(problem)
    return runtime
