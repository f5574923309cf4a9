"""The engine registry: engines by name, imported only when asked for, and the choice behind ``auto``."""

from __future__ import annotations

import importlib
from typing import Any

from streamer.engines.base import Capabilities, Engine, ShouldStop, SynthesisRequest, Voice
from streamer.errors import EngineError, UnknownEngine

__all__ = [
    "AUTO_ORDER",
    "ENGINE_NAMES",
    "Capabilities",
    "Engine",
    "ShouldStop",
    "SynthesisRequest",
    "Voice",
    "create_engine",
    "is_available",
    "resolve_auto",
    "unavailable_reason",
]

ENGINE_NAMES = ("espeak", "piper", "melo")
# What ``engine: auto`` takes, best first: the neural engines when installed, espeak always.
AUTO_ORDER = ("melo", "piper", "espeak")

# Imported lazily: piper pulls in onnxruntime and melo torch, which the server process never needs
# when it only lists espeak voices.
_CLASSES = {
    "espeak": ("streamer.engines.espeak", "EspeakEngine"),
    "piper": ("streamer.engines.piper", "PiperEngine"),
    "melo": ("streamer.engines.melo", "MeloEngine"),
}


def create_engine(name: str, settings: dict[str, Any] | None = None) -> Engine:
    """A new engine by name. Raises UnknownEngine for a name not in ENGINE_NAMES and EngineError
    when the engine's module is not part of this installation."""
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


def unavailable_reason(name: str, settings: dict[str, Any] | None = None) -> str | None:
    """None when the engine exists in this installation and says its libraries and a voice are
    there; else why not, and what to do about it."""
    try:
        return create_engine(name, settings).unavailable_reason()
    except (UnknownEngine, EngineError, ImportError) as exc:
        # ImportError: the engine's module exists but a library it imports at the top does not.
        return str(exc)


def is_available(name: str, settings: dict[str, Any] | None = None) -> bool:
    """Whether the engine exists in this installation and says its libraries and a voice are there."""
    return unavailable_reason(name, settings) is None


def resolve_auto(engines_settings: dict[str, Any] | None) -> str:
    """The engine ``engine: auto`` means: the first of AUTO_ORDER that is available (espeak at last)."""
    engines_settings = engines_settings or {}
    for name in AUTO_ORDER[:-1]:
        if is_available(name, engines_settings.get(name)):
            return name
    return AUTO_ORDER[-1]
