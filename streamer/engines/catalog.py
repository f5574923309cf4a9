"""The voices of every installed engine, seen from the event-loop process: listing and name resolution.

Only cheap engine calls happen here (``unavailable_reason()``, ``voices()``); models load in the workers.
The catalog also says which engine is the default and why (``choice``, ``describe_choice()``), and why
each engine it does not offer is missing (``errors``).
A voice's ``voice_id`` is its index in its language's list, a language being the primary subtag
("en" holds en, en-gb, en-us...), in the order the engine lists its voices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidField, UnknownEngine, UnknownVoice
from ..protocol import fields
from . import AUTO_ORDER, ENGINE_NAMES, create_engine
from .base import Engine, Voice


def primary_language(code: str) -> str:
    return code.lower().replace("_", "-").split("-")[0]


@dataclass(frozen=True, slots=True)
class ResolvedVoice:
    engine: str
    voice: fields.Voice  # a name, or a blend of speaker names -> weights (engines that blend)
    language: str
    sample_rate: int


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """How the default engine was chosen: named by ``tts.engine``, or picked by ``auto``."""

    engine: str
    asked: str  # what tts.engine says: "auto" or an engine's name
    skipped: dict[str, str]  # auto only: the better engines it passed over -> why (as in Catalog.errors)


class Catalog:
    def __init__(self, engines_settings: dict[str, dict[str, Any]], engine: str = "auto") -> None:
        self.engines_settings = engines_settings
        self.engines: dict[str, Engine] = {}
        self.errors: dict[str, str] = {}  # engine -> why it is not offered, and what to do
        for name in ENGINE_NAMES:
            try:
                candidate = create_engine(name, engines_settings.get(name, {}))
                reason = candidate.unavailable_reason()
            except Exception as exc:  # an engine that cannot even be created is simply not offered
                self.errors[name] = str(exc)
                continue
            if reason is None:
                self.engines[name] = candidate
            else:
                self.errors[name] = reason
        self._voices: dict[str, list[Voice]] = {}
        self._proposal: EngineChoice | None = None
        self.choice: EngineChoice
        self.default_engine = self.pick_default(engine)

    @property
    def default_engine(self) -> str:
        return self.choice.engine

    @default_engine.setter
    def default_engine(self, engine: str) -> None:
        # pick_default only proposes (the runtime checks a live config with it before applying it):
        # the choice is made when the engine it picked is set.
        proposal = self._proposal
        self.choice = proposal if proposal and proposal.engine == engine else EngineChoice(engine, engine, {})

    def pick_default(self, engine: str) -> str:
        """The engine ``tts.engine`` names, or for ``auto`` the first of AUTO_ORDER available (espeak at
        last); UnknownEngine, with the reason, for a named engine that is not available."""
        if engine == "auto":
            chosen = next((name for name in AUTO_ORDER[:-1] if name in self.engines), AUTO_ORDER[-1])
            better = AUTO_ORDER[: AUTO_ORDER.index(chosen)]
            skipped = {name: self.errors.get(name, "not available") for name in better}
            self._proposal = EngineChoice(chosen, "auto", skipped)
            return chosen
        if engine not in self.engines:
            raise UnknownEngine(f"engine '{engine}' is not available: {self.errors.get(engine, 'unknown')}")
        self._proposal = EngineChoice(engine, engine, {})
        return engine

    def describe_choice(self) -> str:
        """One line for a person: the default engine, and for ``auto`` why each better one was skipped."""
        choice = self.choice
        if choice.asked != "auto":
            return f"engine {choice.engine}, named by tts.engine"
        if not choice.skipped:
            return f"auto chose {choice.engine}, its first choice ({', '.join(AUTO_ORDER)})"
        skipped = "; ".join(f"{name} skipped ({reason})" for name, reason in choice.skipped.items())
        line = f"auto chose {choice.engine}: {skipped}"
        if choice.engine not in self.engines:  # auto's last resort is taken even when it is missing
            line += f"; {choice.engine} is not available either ({self.errors.get(choice.engine, 'unknown')})"
        return line

    def voices(self, engine: str) -> list[Voice]:
        if engine not in self._voices:
            self._voices[engine] = list(self.engine(engine).voices())
        return self._voices[engine]

    def engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            known = ", ".join(sorted(self.engines)) or "none"
            reason = self.errors.get(name)
            detail = f" ({reason})" if reason else ""
            raise UnknownEngine(f"unknown engine '{name}'{detail}; available: {known}", engine=name) from None

    def engine_with_voice(self, name: str, prefer: str | None = None) -> str | None:
        """The engine that has a voice of this name: ``prefer`` (or the default) first; None if none has."""
        first = prefer or self.default_engine
        for engine in [first, *sorted(set(self.engines) - {first})]:
            if engine in self.engines and self.find(engine, name) is not None:
                return engine
        return prefer

    def language_voices(self, engine: str, language: str) -> list[Voice]:
        primary = primary_language(language)
        return [v for v in self.voices(engine) if primary_language(v.language) == primary]

    def voice_id(self, voice: Voice) -> int:
        return self.language_voices(voice.engine, voice.language).index(voice)

    def find(self, engine: str, name: str) -> Voice | None:
        wanted = name.lower()
        return next((v for v in self.voices(engine) if v.name.lower() == wanted), None)

    def resolve(
        self,
        engine: str | None,
        voice: fields.Voice | None,
        language: str | None,
        default_voice: str | None = None,
        default_language: str = "en",
        default_voice_id: int = 0,
        strict_voice_id: bool = False,
    ) -> ResolvedVoice:
        """The engine and voice a session gets for what it asked, or UnknownEngine/UnknownVoice."""
        engine_name = engine or self.default_engine
        self.engine(engine_name)
        if isinstance(voice, dict):
            return self._resolve_blend(engine_name, voice)
        if voice is not None:
            found = self.find(engine_name, voice)
            if found is None:
                raise UnknownVoice(
                    f"unknown voice '{voice}' for engine '{engine_name}'; GET /api/v1/voices lists them",
                    voice=voice,
                )
            return ResolvedVoice(engine_name, found.name, found.language, found.sample_rate)
        if language is None and default_voice is not None:
            found = self.find(engine_name, default_voice)
            if found is not None:
                return ResolvedVoice(engine_name, found.name, found.language, found.sample_rate)
        wanted = language or default_language
        exact = [
            v for v in self.voices(engine_name) if v.language.lower() == wanted.lower().replace("_", "-")
        ]
        group = exact or self.language_voices(engine_name, wanted)
        if not group:
            if language is None:
                group = self.voices(engine_name)  # the default language is not spoken: take any voice
            if not group:
                raise UnknownVoice(
                    f"engine '{engine_name}' has no voice for language '{wanted}'", language=wanted
                )
        if default_voice_id >= len(group):
            if strict_voice_id:
                raise UnknownVoice(
                    f"voice_id {default_voice_id} is out of range: language '{wanted}' of engine "
                    f"'{engine_name}' has {len(group)} voices",
                    voice_id=default_voice_id,
                )
            default_voice_id = 0
        chosen = group[default_voice_id]
        return ResolvedVoice(engine_name, chosen.name, chosen.language, chosen.sample_rate)

    def _resolve_blend(self, engine_name: str, weights: fields.Blend) -> ResolvedVoice:
        engine = self.engine(engine_name)
        if not engine.capabilities.blending:
            raise InvalidField(f"engine '{engine_name}' cannot blend voices; name one voice", field="voice")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise InvalidField("blend weights must be non-negative with a positive sum", field="voice")
        voices = []
        for name in weights:
            found = self.find(engine_name, name)
            if found is None:
                raise UnknownVoice(
                    f"unknown speaker '{name}' in blend for engine '{engine_name}'", voice=name
                )
            voices.append(found)
        if len({primary_language(v.language) for v in voices}) > 1:
            raise InvalidField("a blend mixes speakers of one language", field="voice")
        total = sum(weights.values())
        normalised = {v.name: weights[name] / total for v, name in zip(voices, weights, strict=True)}
        return ResolvedVoice(engine_name, normalised, voices[0].language, voices[0].sample_rate)

    def languages_of(self, engine: str) -> list[str]:
        return sorted({primary_language(v.language) for v in self.voices(engine)})

    def languages(self) -> list[str]:
        return sorted({lang for engine in self.engines for lang in self.languages_of(engine)})
