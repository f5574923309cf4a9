"""Answers: the JSON bodies the routes return, serialised from these models, errors included.

Answers may grow fields (``extra="allow"``): clients ignore what they do not know. Every field is
derived from real state, never a constant standing in for one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...protocol.fields import Format, Voice


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")  # answers may grow fields; clients ignore what they don't know


State = Literal["healthy", "not_initialized", "starting", "loading", "on_demand", "unhealthy"]


class Components(Answer):
    config_manager: State = Field(description="`unhealthy`: the last reload of the config file failed")
    session_manager: State
    queue_manager: State
    tts_engine: State


class Health(Answer):
    status: Literal["healthy", "degraded"]
    timestamp: str = Field(description="ISO 8601, UTC, whole seconds")
    version: str
    uptime_seconds: float
    components: Components
    engine: str = Field(description="The default engine")
    workers_ready: int


class ReadyChecks(Answer):
    pool: bool = Field(description="At least one worker is ready")
    engine_loaded: bool = Field(description="A ready worker has the default engine loaded")
    accepting: bool = Field(description="The server is not draining for shutdown")


class Readiness(Answer):
    status: Literal["ready", "not_ready"]
    checks: ReadyChecks
    failing: list[Literal["pool", "engine_loaded", "accepting"]]


class StatusServer(Answer):
    uptime_seconds: float
    host: str
    http_port: int
    websocket_port: int
    max_connections: int
    version: str


class StatusEngine(Answer):
    engine: str
    device: str
    default_language: str
    supported_languages: list[str]
    preload_languages: list[str]
    state: State
    engines: list[str] = Field(description="Engines installed and loadable")


class StatusAudio(Answer):
    default_format: Format
    supported_formats: list[Format]
    buffer_size: int = Field(description="Samples in one audio frame at the default sample rate")
    default_sample_rate: int = Field(description="Hz")
    frame_ms: int


class QueueStatus(Answer):
    max_size: int
    current_size: int
    worker_processes: int
    busy_workers: int


class WorkerStatus(Answer):
    index: int
    pid: int | None
    ready: bool
    session: str | None = Field(description="Session of the chunk being synthesized")
    job: int | str | None


class PoolStatus(Answer):
    workers: int
    ready_workers: int
    busy_workers: int
    queue_depth: int = Field(description="Chunks waiting for a worker")
    max_queue: int
    restarts: int = Field(description="Workers respawned after dying")
    recycles: int = Field(description="Idle workers replaced for holding more than pool.max_worker_rss_mb")
    jobs_done: int
    worker_list: list[WorkerStatus]
    load_errors: dict[int, dict[str, str]] = Field(
        description="Worker index -> engine -> why it failed to load"
    )


class LoopLag(Answer):
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class ServerStatus(Answer):
    status: Literal["running", "draining"]
    timestamp: str
    server: StatusServer
    tts_engine: StatusEngine
    audio_processor: StatusAudio
    active_connections: int = Field(description="Open WebSocket connections")
    queue_status: QueueStatus
    sessions: int
    pool: PoolStatus
    loop_lag: LoopLag = Field(description="Event-loop lag measured since start (or the last reset)")
    counters: dict[str, int]
    pending_restart: list[str] = Field(description="Configuration keys changed that need a restart")


class Metrics(Answer):
    timestamp: str
    uptime_seconds: float
    active_sessions: int = Field(description="Sessions with a connected client")
    total_requests: int
    average_latency_ms: float = Field(description="Mean HTTP request time")
    queue_size: int
    memory_usage_mb: float = Field(description="Resident memory of the server process, MiB")
    cpu_usage_percent: float
    workers_memory_mb: float = Field(description="Resident memory of the worker processes, MiB")
    sessions_total: int
    turns: int
    interrupts: int
    ttfa_ms_p50: float | None = Field(description="Median time to first audio of recent turns; null: none")
    ttfa_ms_p95: float | None


class _Done(Answer):
    status: Literal["success"] = "success"
    message: str


class ConfigUpdated(_Done):
    applied: list[str] = Field(description="Dotted keys changed and in effect now")
    restart_required: list[str] = Field(description="Dotted keys kept for `save`, in effect after a restart")


class ConfigSaved(_Done):
    path: str = Field(description="The file written")
    restart_required: list[str]


class Speaker(Answer):
    id: int = Field(description="The voice_id: index of the voice in its language's list")
    name: str
    gender: str | None
    description: str
    sample_rate: int = Field(description="Hz of the engine's output for this voice")
    quality: str
    engine: str
    language: str


class LanguageGroup(Answer):
    code: str = Field(description="Primary language subtag")
    name: str
    engine: str
    speakers: list[Speaker]


class Languages(Answer):
    supported_languages: list[str] = Field(description="Of the default engine")
    preload_languages: list[str]
    default_language: str
    languages: list[str] = Field(description="Same as supported_languages")
    by_engine: dict[str, list[str]]


class EngineCapabilities(Answer):
    offline: bool
    ssml: bool
    rate_control: bool
    pitch_control: bool
    streaming: bool = Field(description="Yields audio inside a sentence")
    blending: bool = Field(description="Takes a blend of speakers as the voice")
    max_text_length: int


class EngineInfo(Answer):
    name: str
    available: Literal[True] = True
    default: bool
    state: State
    capabilities: EngineCapabilities
    languages: list[str]
    voices: list[str]
    offline: bool


class UnavailableEngine(Answer):
    name: str
    available: Literal[False] = False
    default: Literal[False] = False
    reason: str
    languages: list[str] = []
    voices: list[str] = []


class EngineVoice(Answer):
    name: str
    engine: str
    language: str
    gender: str | None
    quality: str
    sample_rate: int
    voice_id: int
    description: str


class FormatDetail(Answer):
    format: Format
    mime_type: str


class Formats(Answer):
    formats: list[Format]
    default_format: Format
    details: list[FormatDetail]


class SessionConfig(Answer):
    language: str
    voice_id: int | None
    voice: Voice  # a name, or a blend
    engine: str
    format: Format
    sample_rate: int
    speed: float


class SessionSummary(Answer):
    session_id: str
    created_at: str
    last_activity: str
    is_active: bool = Field(description="A turn is under way: text taken and not yet all spoken")
    connected: bool = Field(description="A WebSocket client is attached")


class SessionDetails(SessionSummary):
    config: SessionConfig
    generation: int = Field(description="Bumped by every interrupt")
    last_seq: int | None = Field(description="Sequence number of the last audio frame sent")
    text_offset: int
    chunks_queued: int
    chunks_done: int
    audio_seconds_sent: float


class SessionCreated(SessionDetails):
    resume_token: str = Field(description="Send with the session_id in the WebSocket `start` message")
    ws_url: str


class SessionList(Answer):
    sessions: list[SessionSummary] = Field(description="One page, oldest first")
    total: int = Field(description="Every session held, on every page")
    offset: int = Field(0, description="Where this page starts")
    limit: int = Field(description="The page size asked for (or the default)")
    next_offset: int | None = Field(None, description="The `offset` of the next page; null on the last")


class SessionClosed(_Done):
    pass


class SessionInterrupted(_Done):
    generation: int = Field(description="The session's new generation")


class AllInterrupted(_Done):
    interrupted: int


# ---- errors ---------------------------------------------------------------------------------------------


class Error(BaseModel):
    """Every error answer: what went wrong, a stable code, and the request id to find it in the logs."""

    detail: str
    error_type: str = Field(examples=["not_found"])
    request_id: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. [body, field] or a config path")
    msg: str


class ValidationError(BaseModel):
    """A 422: every field that was wrong."""

    detail: list[FieldError]
    error_type: str = Field(examples=["invalid_field"])
    request_id: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """Errors of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIErrorDetail
