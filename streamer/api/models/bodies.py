"""Request bodies: each model validates its body and is its schema in /openapi.json.

The models are strict, as the WebSocket is: a bool is not a number and ``"1.5"`` is not one either.
``RequestBody.parse`` turns pydantic's errors into one ``InvalidField`` listing every bad field
(``{"loc": ["body", field], "msg"}``), an unknown field with the nearest known name. A field may have
other names (``AliasChoices``): each is listed in the schema, and sending two names of one field is an error.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ...errors import InvalidField
from ...protocol.fields import FORMATS, SampleRate, Speed, VoiceSpec


def _document_aliases(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """List each other name of a field as a property of its own (pydantic shows only the first)."""
    assert issubclass(model, RequestBody)
    for name, canonical in model.accepted_names().items():
        if name != canonical:
            alias = {
                **schema["properties"][canonical],
                "description": f"Another name for `{canonical}`; send one of them",
            }
            alias.pop("title", None)
            schema["properties"][name] = alias


class RequestBody(BaseModel):
    """A JSON request body: strict types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_document_aliases)

    @classmethod
    def accepted_names(cls) -> dict[str, str]:
        """Every name a field may be sent as -> the field's documented name."""
        names = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            choices = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [name]
            names |= dict.fromkeys(choices, choices[0])
        return names

    @classmethod
    def parse(cls, body: dict[str, Any], **context: Any) -> Self:
        """The validated body, or ``InvalidField`` listing each bad field once (``context``: limits)."""
        try:
            return cls.model_validate(body, context=context)
        except pydantic.ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                if error["type"] == "extra_forbidden":
                    errors.setdefault(field, cls._unknown(field, body))
                else:
                    errors.setdefault(field, error["msg"])  # a union's other members add nothing
            field, msg = next(iter(errors.items()))
            raise InvalidField(
                f"field '{field}': {msg}" if field else msg,
                field=field or None,
                errors=[{"loc": ["body", *([f] if f else [])], "msg": m} for f, m in errors.items()],
            ) from None

    @classmethod
    def _unknown(cls, name: str, body: dict[str, Any]) -> str:
        names = cls.accepted_names()
        if name in names:  # the field came under two of its names at once
            sent = " and ".join(f"'{n}'" for n, c in names.items() if c == names[name] and n in body)
            return f"{sent} are the same field; send one of them"
        nearest = difflib.get_close_matches(name, names, n=1)
        return f"unknown field '{name}'" + (f"; did you mean '{nearest[0]}'?" if nearest else "")


def _speakable(text: str, info: ValidationInfo) -> str:
    if not text.strip():
        raise PydanticCustomError("blank_text", "must not be empty or only white space")
    limit = (info.context or {}).get("max_text_chars")
    if limit is not None and len(text) > limit:
        raise PydanticCustomError(
            "text_too_long",
            "has {length} characters, over the limit of {limit}",
            {"length": len(text), "limit": limit},
        )
    return text


# Text to speak: not blank, and within the limit the handler passes as ``max_text_chars``.
SpokenText = Annotated[
    str, AfterValidator(_speakable), Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})
]
# A format is checked against `audio.supported_formats` by the runtime: that error is `unsupported_format`.
FormatName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(FORMATS)})]
OPENAI_FORMATS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}
OpenAIFormatName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(OPENAI_FORMATS)})]


class SessionCreate(RequestBody):
    """A session's settings, the keys of the protocol's config object; each left out takes the default."""

    engine: str | None = Field(None, examples=["espeak"])
    voice: VoiceSpec | None = Field(
        None, description="A voice name, or (engines that blend) speaker names -> weights", examples=["en-us"]
    )
    voice_id: int | None = Field(None, ge=0, description="Index in the language's voice list")
    language: str | None = Field(None, examples=["en"])
    speed: Speed | None = None
    format: FormatName | None = None
    sample_rate: SampleRate | None = None


class SynthRequest(RequestBody):
    """What to say and how; the answer is the whole file."""

    text: SpokenText = Field(
        description="1 to `limits.max_text_chars` characters, not only white space",
        examples=["Hello from streamer."],
    )
    lang: str | None = Field(None, validation_alias=AliasChoices("lang", "language"), examples=["en"])
    engine: str | None = Field(None, examples=["espeak"])
    voice: VoiceSpec | None = Field(
        None, description="A voice name (without `engine`: the engine that has it), or a blend"
    )
    rate: Speed | None = Field(None, validation_alias=AliasChoices("rate", "speed"))
    pitch: float | None = Field(
        None,
        description="Accepted for ttskit clients; must be 0",
        json_schema_extra={"minimum": 0, "maximum": 0},
    )
    format: FormatName | None = Field(None, description="Default: ogg (Opus) when supported")
    sample_rate: SampleRate | None = None

    @field_validator("pitch")
    @classmethod
    def _no_pitch(cls, pitch: float | None) -> float | None:
        if pitch:
            raise PydanticCustomError(
                "pitch", "pitch adjustment is not supported; send 0 or leave 'pitch' out"
            )
        return pitch


class VoiceRef(BaseModel):
    """OpenAI's reference to a custom voice: here, a voice name of ours."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: str


class SpeechRequest(RequestBody):
    """OpenAI's speech request; fields OpenAI adds later are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[ -~]+$",  # echoed in a header: printable ASCII only
        description="Any name, echoed in X-Model; one of our engines selects it",
        examples=["tts-1"],
    )
    input: SpokenText = Field(
        description="1 to `openai.max_input_chars` characters, not only white space",
        examples=["Hello from streamer."],
    )
    voice: VoiceSpec | VoiceRef = Field(
        description="An OpenAI voice (mapped by `openai.voices`, else the default voice), or one of ours",
        examples=["alloy"],
    )
    response_format: OpenAIFormatName | None = Field(
        None, description="Default mp3; opus is Opus in Ogg; pcm is s16le mono; all at 24 kHz"
    )
    speed: Speed | None = None
    instructions: str | None = Field(None, description="Accepted and ignored")
    stream_format: Literal["audio"] | None = None
