"""Voices, languages, engines and formats, from the engines this server really has."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..audio import MIME_TYPES
from ..engines.base import Voice
from ..engines.catalog import primary_language
from ..errors import UnknownEngine
from ..protocol.fields import FORMATS
from .http import answer
from .models.answers import (
    EngineInfo,
    EngineVoice,
    Formats,
    LanguageGroup,
    Languages,
    Speaker,
    UnavailableEngine,
)
from .system import runtime_of

# Names for the languages a client is most likely to show; others come from the engine's description.
LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "zh": "Chinese", "cmn": "Chinese (Mandarin)", "ja": "Japanese", "ko": "Korean",
    "ru": "Russian", "ar": "Arabic", "hi": "Hindi", "fa": "Persian", "pl": "Polish", "tr": "Turkish",
    "sv": "Swedish", "da": "Danish", "fi": "Finnish", "nb": "Norwegian Bokmål", "el": "Greek", "cs": "Czech",
    "uk": "Ukrainian", "he": "Hebrew", "id": "Indonesian", "vi": "Vietnamese", "th": "Thai",
}  # fmt: skip


def language_name(code: str, voices: list[Voice]) -> str:
    if code in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[code]
    described = next((v.description for v in voices if v.description), "")
    return described.split(" (")[0] or code


async def voices(request: Request) -> Response:
    """Grouped by language, each speaker's ``id`` its voice_id (of the default engine unless ?engine=)."""
    runtime = runtime_of(request)
    catalog = runtime.catalog
    engine = request.query_params.get("engine") or catalog.default_engine
    catalog.engine(engine)
    wanted = request.query_params.get("language")
    groups: dict[str, list[Voice]] = {}
    for voice in catalog.voices(engine):
        groups.setdefault(primary_language(voice.language), []).append(voice)
    body = [
        LanguageGroup(
            code=code,
            name=language_name(code, members),
            engine=engine,
            speakers=[Speaker(id=i, **asdict(v)) for i, v in enumerate(members)],
        )
        for code, members in sorted(groups.items())
        if wanted is None or code == primary_language(wanted)
    ]
    return answer(body)


async def languages(request: Request) -> Response:
    runtime = runtime_of(request)
    catalog = runtime.catalog
    supported = catalog.languages_of(catalog.default_engine)
    return answer(
        Languages(
            supported_languages=supported,
            preload_languages=runtime.settings.tts.preload_languages,
            default_language=runtime.settings.tts.default_language,
            languages=supported,
            by_engine={name: catalog.languages_of(name) for name in sorted(catalog.engines)},
        )
    )


def engine_info(request: Request, name: str) -> EngineInfo:
    runtime = runtime_of(request)
    catalog = runtime.catalog
    caps = catalog.engine(name).capabilities
    capabilities = {
        "offline": True,  # every engine here runs on this machine
        "ssml": False,
        "rate_control": caps.speed,
        "pitch_control": caps.pitch,
        "streaming": caps.streaming,
        "blending": caps.blending,
        "max_text_length": runtime.settings.limits.max_text_chars,
    }
    return EngineInfo.model_validate(
        {
            "name": name,
            "default": name == catalog.default_engine,
            "state": runtime.pool.engine_state(name),
            "capabilities": capabilities,
            "languages": catalog.languages_of(name),
            "voices": [v.name for v in catalog.voices(name)],
            "offline": True,
        }
    )


async def engines(request: Request) -> Response:
    catalog = runtime_of(request).catalog
    body: list[EngineInfo | UnavailableEngine] = [engine_info(request, n) for n in sorted(catalog.engines)]
    if request.query_params.get("available_only", "false").lower() not in ("1", "true", "yes"):
        body += [UnavailableEngine(name=n, reason=why) for n, why in sorted(catalog.errors.items())]
    return answer(body)


async def engine(request: Request) -> Response:
    name = request.path_params["name"]
    catalog = runtime_of(request).catalog
    if name not in catalog.engines and name in catalog.errors:
        raise UnknownEngine(f"engine '{name}' is not available: {catalog.errors[name]}", engine=name)
    return answer(engine_info(request, name))


async def engine_voices(request: Request) -> Response:
    catalog = runtime_of(request).catalog
    name = request.path_params["name"]
    catalog.engine(name)
    language = request.query_params.get("language")
    listed = catalog.language_voices(name, language) if language else catalog.voices(name)
    return answer([EngineVoice(voice_id=catalog.voice_id(v), **asdict(v)) for v in listed])


async def formats(request: Request) -> Response:
    settings = runtime_of(request).settings
    supported = [f for f in FORMATS if f in settings.audio.supported_formats]
    return answer(
        Formats.model_validate(
            {
                "formats": supported,
                "default_format": settings.audio.default_format,
                "details": [{"format": f, "mime_type": MIME_TYPES[f]} for f in supported],
            }
        )
    )


routes = [
    Route("/api/v1/voices", voices, methods=["GET"]),
    Route("/api/v1/languages", languages, methods=["GET"]),
    Route("/api/v1/engines", engines, methods=["GET"]),
    Route("/api/v1/engines/{name}", engine, methods=["GET"]),
    Route("/api/v1/engines/{name}/voices", engine_voices, methods=["GET"]),
    Route("/api/v1/formats", formats, methods=["GET"]),
]
