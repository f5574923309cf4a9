"""Typed settings: the packaged defaults file, the user's file, environment overrides, validation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .protocol.fields import FORMATS, Format, SampleRate, Speed

ENV_PREFIX = "STREAMER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    websocket_port: int = Field(8081, ge=0, le=65535)
    max_connections: int = Field(100, ge=1)
    shutdown_timeout_s: float = Field(10.0, ge=0)
    allowed_origins: list[str] = Field(default_factory=lambda: ["*"])


class TTSSettings(_Section):
    engine: Literal["auto", "espeak", "piper", "melo"] = "auto"
    device: str = "auto"
    default_language: str = "en"
    default_voice: str | None = None
    default_voice_id: int = Field(0, ge=0)
    default_speed: Speed = 1.0
    preload_languages: list[str] = Field(default_factory=lambda: ["en"])

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")


class AudioSettings(_Section):
    default_format: Format = "pcm"
    supported_formats: list[Format] = Field(default_factory=lambda: list(FORMATS))
    default_sample_rate: SampleRate = 24000
    frame_ms: int = Field(40, ge=10, le=1000)


class EspeakSettings(_Section):
    data_path: str | None = None
    buffer_ms: int = Field(50, ge=10, le=1000)


class PiperSettings(_Section):
    voices_dir: str | None = None
    threads: int = Field(0, ge=0, le=64)


class MeloSettings(_Section):
    model_dir: str | None = None
    languages: list[str] | None = None
    bert_dir: str | None = None
    nltk_data: str | None = None
    device: str = "auto"
    threads: int = Field(0, ge=0, le=64)
    sdp_ratio: float = Field(0.2, ge=0, le=1)
    noise_scale: float = Field(0.6, ge=0, le=2)
    noise_scale_w: float = Field(0.8, ge=0, le=2)
    streaming: bool = True
    window_frames: int = Field(32, ge=4, le=4096)
    max_window_frames: int = Field(256, ge=4, le=4096)
    overlap_frames: int = Field(16, ge=0, le=256)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return TTSSettings._device(value)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name at least one language")
        return value


class EnginesSettings(_Section):
    espeak: EspeakSettings = Field(default_factory=EspeakSettings)
    piper: PiperSettings = Field(default_factory=PiperSettings)
    melo: MeloSettings = Field(default_factory=MeloSettings)


class PoolSettings(_Section):
    workers: int = Field(0, ge=0, le=256)
    max_queue: int = Field(64, ge=1)
    max_inflight_per_session: int = Field(2, ge=1, le=16)
    max_batch: int = Field(1, ge=1, le=64)
    nice: int = Field(10, ge=0, le=19)
    max_audio_s_per_char: float = Field(1.0, ge=0)
    max_audio_floor_s: float = Field(5.0, ge=0)
    max_worker_rss_mb: int = Field(2048, ge=0)


class ChunkerSettings(_Section):
    first_chunk_chars: int = Field(30, ge=8)
    max_chunk_chars: int = Field(250, ge=16)
    idle_flush_ms: int = Field(600, ge=0)


class LimitsSettings(_Section):
    max_text_chars: int = Field(10000, ge=1)
    max_buffered_chars: int = Field(50000, ge=1)
    max_message_bytes: int = Field(262144, ge=256)
    max_messages_per_s: float = Field(200, gt=0)
    send_timeout_s: float = Field(10.0, gt=0)
    ping_interval_s: float = Field(20.0, ge=0)
    max_outbound_audio_ms: int = Field(2000, ge=100)
    max_request_bytes: int = Field(1048576, ge=1024)


class SessionsSettings(_Section):
    idle_timeout_s: float = Field(300.0, gt=0)
    resume_window_s: float = Field(60.0, ge=0)
    max_sessions: int = Field(1000, ge=1)


# What GET /api/v1/config shows in place of a secret: never a secret itself.
SECRET_MASK = "********"


class SecuritySettings(_Section):
    secret_key: str | None = None
    api_keys: list[str] = Field(default_factory=list)

    @field_validator("secret_key")
    @classmethod
    def _not_the_mask(cls, value: str | None) -> str | None:
        if value == SECRET_MASK:
            raise ValueError("is the mask GET /api/v1/config shows, not a key")
        return value

    @field_validator("api_keys")
    @classmethod
    def _no_mask(cls, keys: list[str]) -> list[str]:
        if SECRET_MASK in keys:
            raise ValueError("holds the mask GET /api/v1/config shows, not a key")
        if any(not key.strip() for key in keys):
            raise ValueError("an API key must not be empty")
        return keys


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class WyomingSettings(_Section):
    host: str | None = None
    port: int | None = Field(None, ge=0, le=65535)


class OpenAISettings(_Section):
    max_input_chars: int = Field(4096, ge=1)
    voices: dict[str, str] = Field(default_factory=dict)


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    engines: EnginesSettings = Field(default_factory=EnginesSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    sessions: SessionsSettings = Field(default_factory=SessionsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)


def default_config_path() -> Path:
    """The packaged defaults: inside the wheel, or the repository's configs/ in a source checkout."""
    packaged = Path(__file__).parent / "_data" / "default.yaml"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with ``patch`` laid over it, mappings merged key by key."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``STREAMER_SECTION__KEY[__SUBKEY]=value`` variables as a nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def validate(data: Mapping[str, Any]) -> Settings:
    """Settings from a full document, or ConfigError listing every bad field."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        raise ConfigError(f"invalid configuration: {summary}", errors) from None


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults file, then the user's file, then environment variables."""
    environ = os.environ if environ is None else environ
    data = read_yaml(default_config_path())
    if path is not None:
        data = deep_merge(data, read_yaml(path))
    data = deep_merge(data, env_overrides(environ))
    return validate(data)
