"""What `serve` and `config check` check beyond the schema: the engine can run, the default voice exists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Settings

if TYPE_CHECKING:
    from ..engines.catalog import Catalog
    from ..runtime import Runtime


def engine_choice(catalog: Catalog, requested: str) -> str:
    """One line: the engine sessions get, and for ``auto`` why each engine it passed over was skipped,
    e.g. ``piper (tts.engine: auto; skipped melo: no model files)``."""
    chosen = catalog.default_engine
    skipped = "".join(f"; skipped {name}: {reason}" for name, reason in catalog.errors.items())
    return f"{chosen} (tts.engine: {requested}{skipped if requested == 'auto' else ''})"


def checked_runtime(
    settings: Settings, config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> Runtime:
    """The server's runtime (nothing started yet) once ``tts.engine`` can run and ``tts.default_voice``
    exists; ConfigError, one line, otherwise."""
    from ..runtime import Runtime

    return Runtime(settings, config_path, overrides)  # checks both, as a live config change does
