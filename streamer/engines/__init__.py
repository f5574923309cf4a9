"""The engine registry: engines by name, imported only when asked for, and the choice behind ``auto``."""

from __future__ import annotations

import importlib
from typing import Any

from streamer.engines.base import Capabilities, Engine, ShouldStop, SynthesisRequest, Voice
from streamer.errors import EngineError, UnknownEngine

__all__ = [
    "ENGINE_NAMES",
    "Capabilities",
    "Engine",
    "ShouldStop",
    "SynthesisRequest",
    "Voice",
    "create_engine",
    "is_available",
    "resolve_auto",
]

ENGINE_NAMES = ("espeak", "piper", "melo")

# Imported lazily: piper pulls in onnxruntime and melo torch, which the server process never needs
# when it only lists espeak voices.
_CLASSES = {
    "espeak": ("streamer.engines.espeak", "EspeakEngine"),
    "piper": ("streamer.engines.piper", "PiperEngine"),
    "melo": ("streamer.engines.melo", "MeloEngine"),
}


def create_engine(name: str, settings: dict[str, Any] | None = None) -> Engine:
    """A new engine by name. Raises UnknownEngine for a name not in ENGINE_NAMES and EngineError
    when the engine's module is not part of this installation (melo before it is written)."""
    if name not in _CLASSES:
        raise UnknownEngine(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}", engine=name)
    module_name, class_name = _CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise EngineError(f"{name} engine not installed ({module_name} is missing)", engine=name) from exc
    engine: Engine = getattr(module, class_name)(settings)
    return engine


def is_available(name: str, settings: dict[str, Any] | None = None) -> bool:
    """Whether the engine exists in this installation and says its libraries and a voice are there."""
    try:
        return create_engine(name, settings).available()
    except (UnknownEngine, EngineError, ImportError):
        # ImportError: the engine's module exists but a library it imports at the top does not.
        return False


def resolve_auto(engines_settings: dict[str, Any] | None) -> str:
    """The engine ``engine: auto`` means: melo if installed and available, else piper, else espeak."""
    engines_settings = engines_settings or {}
    for name in ("melo", "piper"):
        if is_available(name, engines_settings.get(name)):
            return name
    return "espeak"
