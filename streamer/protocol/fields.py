"""What a session setting may be, defined once: formats, speed, sample rate, voices and blends. No I/O.

The WebSocket protocol, the REST bodies, the configuration and the encoders all take these settings;
each imports its rule from here instead of writing it again. The pydantic types (``Speed``,
``SampleRate``, ``VoiceSpec``) carry the same bounds into models and the OpenAPI document; the
``check_*`` functions are for hand-parsed wire messages and raise ``InvalidField`` naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from ..errors import InvalidField

Format = Literal["pcm", "wav", "ogg", "mp3", "flac", "aac"]
FORMATS: tuple[str, ...] = get_args(Format)

SPEED_MIN, SPEED_MAX = 0.25, 4.0  # the speaking-rate multiplier every engine accepts
SAMPLE_RATE_MIN, SAMPLE_RATE_MAX = 8000, 48000  # Hz a client may ask for (codecs may round it)

# The keys of a session's configuration, in the order they are documented (protocol `start`/`config`,
# POST /api/v1/sessions).
CONFIG_KEYS = ("engine", "voice", "voice_id", "language", "speed", "format", "sample_rate")

Blend = dict[str, float]  # speaker name -> weight, for engines that blend speakers
Voice = str | Blend  # what a client names as the voice: one voice's name, or a blend

Speed = Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX, description="Speaking-rate multiplier")]
SampleRate = Annotated[int, Field(ge=SAMPLE_RATE_MIN, le=SAMPLE_RATE_MAX, description="Hz")]
BlendWeights = Annotated[Blend, Field(min_length=1, description="Speaker names -> weights")]

VOICE_TYPE_MESSAGE = "must be a voice name or a blend object of speaker names to weights"


def _voice_or_blend(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        # One message for the field, instead of one per member of the union that did not match.
        raise PydanticCustomError("voice_type", VOICE_TYPE_MESSAGE) from None


# The voice as a pydantic type: a name or a blend, with one clear error for anything else.
VoiceSpec = Annotated[str | BlendWeights, WrapValidator(_voice_or_blend)]


def is_number(value: Any) -> bool:
    """An int or float, but not a bool (a flag sent as a number, or a number as a flag, is a mistake)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_blend(value: Any) -> bool:
    """A non-empty object of speaker names to numeric weights."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and is_number(w) for k, w in value.items())
    )


def check_voice(value: Any, field: str) -> Voice | None:
    """A voice name, a blend (weights as floats), or None; anything else is an ``InvalidField``."""
    if value is None or isinstance(value, str):
        return value
    if is_blend(value):
        return {name: float(weight) for name, weight in value.items()}
    raise InvalidField(f"field '{field}' {VOICE_TYPE_MESSAGE}", field=field)


def check_speed(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if not is_number(value):
        raise InvalidField(f"field '{field}' must be a number", field=field)
    if not SPEED_MIN <= value <= SPEED_MAX:
        raise InvalidField(f"field '{field}' must be between {SPEED_MIN} and {SPEED_MAX}", field=field)
    return float(value)


def check_sample_rate(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"field '{field}' must be an integer", field=field)
    if not SAMPLE_RATE_MIN <= value <= SAMPLE_RATE_MAX:
        raise InvalidField(
            f"field '{field}' must be between {SAMPLE_RATE_MIN} and {SAMPLE_RATE_MAX}", field=field
        )
    return value
