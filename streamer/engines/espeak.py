"""espeak-ng in process through ctypes: formant speech in 100+ languages, streamed block by block."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from streamer.engines.base import (
    Capabilities,
    ShouldStop,
    SynthesisRequest,
    Voice,
    check_speed,
    voice_name,
)
from streamer.errors import EngineError, UnknownVoice

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PARAM_RATE = 1  # espeakRATE, in words per minute
_BASE_WPM, _MIN_WPM, _MAX_WPM = 175, 80, 450
_GENDERS = {1: "male", 2: "female"}
# Blocks the synthesis thread may run ahead of the consumer (about 60 ms each): espeak runs ~1000x
# faster than real time, so this bounds memory and lets an abort reach the library through the callback.
_QUEUE_BLOCKS = 8
_PUT_POLL_S = 0.05

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); wav is NULL at the end.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
Sink = Callable[[np.ndarray], bool]  # takes one block; True aborts the utterance


class _VoiceStruct(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code) pairs, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@dataclass(frozen=True, slots=True)
class _ListedVoice:
    identifier: bytes  # e.g. b"gmw/en-US": what espeak_SetVoiceByName reliably accepts ("fr-fr" is not)
    description: str
    gender: str | None
    priority: int  # espeak's own ranking of this voice for the language; lower is better


def _library_path() -> str:
    try:
        import espeakng_loader
    except ImportError:
        path = ctypes.util.find_library("espeak-ng")
        if path is None:
            raise EngineError(
                "espeak-ng not found: pip install espeakng-loader (a dependency of streamer), "
                "or install the system library (libespeak-ng1)"
            ) from None
        return path
    return espeakng_loader.get_library_path()


def _default_data_path() -> str | None:
    try:
        import espeakng_loader
    except ImportError:
        return None  # the system library knows where its own data lives
    return espeakng_loader.get_data_path()


class _Espeak:
    """The process's one espeak-ng: initialised once; its state is global, so one synthesis at a time."""

    def __init__(self, data_path: str | None, buffer_ms: int) -> None:
        try:
            lib = ctypes.CDLL(_library_path())
        except OSError as exc:
            raise EngineError(f"cannot load espeak-ng: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        # The library clamps the block length to at least 60 ms (1324 samples at 22050 Hz).
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, buffer_ms, data_path.encode() if data_path else None, 0
        )
        if rate <= 0:
            raise EngineError(f"espeak-ng failed to initialise (data path {data_path!r})")
        self._lib = lib
        self.sample_rate: int = rate
        # Listed once, before any synthesis: espeak_ListVoices rebuilds library state a running
        # utterance may be reading, so voices() serves this copy and never calls the library again.
        self.voices = self._list_voices()
        self.lock = threading.Lock()
        self.owner: int | None = None  # thread whose synthesis holds the lock
        self.stale = False  # a fork copied the library mid-utterance (see _after_fork_in_child)
        self._sink: Sink | None = None
        self._current: bytes | None = None
        self._callback = _SynthCallback(self._on_audio)  # kept referenced: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _list_voices(self) -> dict[str, _ListedVoice]:
        listed: dict[str, _ListedVoice] = {}
        entries = self._lib.espeak_ListVoices(None)  # a NULL-terminated array of voice pointers
        index = 0
        while entries[index]:
            struct = entries[index].contents
            index += 1
            address = struct.languages
            while priority := ctypes.c_ubyte.from_address(address).value:
                code = ctypes.string_at(address + 1)
                address += len(code) + 2
                voice = _ListedVoice(
                    identifier=struct.identifier,
                    description=(struct.name or b"").decode(errors="replace").strip(),
                    gender=_GENDERS.get(struct.gender),
                    priority=priority,
                )
                key = code.decode().lower()
                if key not in listed or priority < listed[key].priority:
                    listed[key] = voice
        return listed

    def _on_audio(self, wav: Any, count: int, _events: Any) -> int:
        if not wav or count <= 0 or self._sink is None:
            return 0
        # Copy out: the library reuses this buffer for the next block.
        block = np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / np.float32(32768)
        try:
            return 1 if self._sink(block) else 0
        except BaseException:
            return 1  # an exception cannot cross into C; aborting is the only safe answer

    def speak(self, text: str, identifier: bytes, wpm: int, sink: Sink) -> None:
        """Synthesize ``text``, handing each block to ``sink``. The caller holds ``lock``."""
        if identifier != self._current:
            if self._lib.espeak_SetVoiceByName(identifier) != 0:
                raise EngineError(f"espeak-ng could not select voice {identifier.decode()}")
            self._current = identifier
        self._lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        if self.stale:
            # The copied utterance's queued audio would open the next one; an utterance aborted at
            # its first block flushes it (measured: espeak_Cancel does not).
            self._synth(b" ", lambda _block: True)
            self.stale = False
        status = self._synth(text.encode(), sink)
        if status != 0:
            raise EngineError(f"espeak-ng synthesis failed (status {status})")

    def _synth(self, data: bytes, sink: Sink) -> int:
        self._sink = sink
        try:
            return int(self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None))
        finally:
            self._sink = None


_instance: _Espeak | None = None
_instance_lock = threading.Lock()


def _espeak(data_path: str | None, buffer_ms: int) -> _Espeak:
    """The process's espeak-ng; the first caller's settings win, later ones share it."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _Espeak(data_path, buffer_ms)
        return _instance


def _after_fork_in_child() -> None:
    # A fork taken while a thread held a lock would leave the child's copy locked forever.
    global _instance_lock
    _instance_lock = threading.Lock()
    if _instance is not None:
        _instance.stale = _instance.lock.locked()
        _instance.lock = threading.Lock()
        _instance.owner = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class _BlockStream:
    """Hands blocks from the synthesis thread to the consumer through a bounded queue."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(_QUEUE_BLOCKS)
        self._closed = threading.Event()
        self._error: BaseException | None = None

    def produce(self, speak: Callable[[Sink], None]) -> None:
        """Runs in the synthesis thread; always ends the stream, passing any failure to the consumer."""
        try:
            speak(self._put)
        except BaseException as exc:
            self._error = exc
        finally:
            self._put(self._END)

    def _put(self, item: Any) -> bool:
        """Wait for room; True (abort) once the consumer has gone."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_S)
                return False
            except queue.Full:
                continue
        return True

    def __iter__(self) -> Iterator[np.ndarray]:
        while (item := self._queue.get()) is not self._END:
            yield item
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._closed.set()
        # Emptying the queue wakes a producer blocked in put() now rather than at its next poll.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


def _words_per_minute(speed: float) -> int:
    # The library takes 80..450 words per minute: the slowest and fastest speeds meet those bounds.
    return max(_MIN_WPM, min(_MAX_WPM, round(_BASE_WPM * check_speed(speed))))


class EspeakEngine:
    """espeak-ng through ctypes. Always available where the library is; no model to load.

    Synthesis streams: espeak_Synth runs in a short-lived thread whose callback feeds a bounded
    queue, so the first ~60 ms block reaches the caller well under a millisecond after the call,
    not after the whole utterance. Voices are named by language code ("en-us", "fr-fr", "de").
    Settings: ``data_path`` (espeak-ng-data; default: espeakng-loader's), ``buffer_ms`` (block
    length; espeak-ng uses at least 60). They apply to the first engine of the process only,
    because the library is process-global.
    """

    name = "espeak"
    capabilities = Capabilities(streaming=True, speed=True)

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        settings = settings or {}
        self._data_path: str | None = settings.get("data_path") or _default_data_path()
        self._buffer_ms = int(settings.get("buffer_ms") or 50)
        self._voices: list[Voice] | None = None

    def _runtime(self) -> _Espeak:
        return _espeak(self._data_path, self._buffer_ms)

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        try:
            runtime = self._runtime()
        except EngineError as exc:
            return str(exc)
        if not runtime.voices:
            where = self._data_path or "the library's own"
            return f"espeak-ng lists no voices (data path: {where}): check engines.espeak.data_path"
        return None

    def voices(self) -> list[Voice]:
        if self._voices is None:
            runtime = self._runtime()
            self._voices = [
                Voice(
                    name=code,
                    engine=self.name,
                    language=code,
                    sample_rate=runtime.sample_rate,
                    gender=listed.gender,
                    quality="low",
                    description=listed.description,
                )
                for code, listed in sorted(runtime.voices.items())
            ]
        return list(self._voices)

    def load(self) -> None:
        self._runtime()

    def warmup(self) -> None:
        # Reads the default voice's phoneme tables and dictionary into memory before the first request.
        for _ in self.synthesize(SynthesisRequest(text="Ready.", voice="en-us"), lambda: False):
            pass

    def synthesize(self, request: SynthesisRequest, should_stop: ShouldStop) -> Iterator[np.ndarray]:
        runtime = self._runtime()
        name = voice_name(request, self.name)
        listed = runtime.voices.get(name.lower())
        if listed is None:
            raise UnknownVoice(f"espeak has no voice {name!r}", voice=name)
        wpm = _words_per_minute(request.speed)
        text = request.text.replace("\x00", " ")  # the library reads a C string
        if not text.strip():
            return
        if runtime.owner == threading.get_ident():
            # The lock is held for this thread's suspended synthesis: waiting here would deadlock.
            raise RuntimeError("an espeak synthesis is already open in this thread; finish or close it first")
        with runtime.lock:
            runtime.owner = threading.get_ident()
            try:
                yield from self._stream(runtime, text, listed.identifier, wpm, should_stop)
            finally:
                runtime.owner = None

    def _stream(
        self, runtime: _Espeak, text: str, identifier: bytes, wpm: int, should_stop: ShouldStop
    ) -> Iterator[np.ndarray]:
        stream = _BlockStream()
        speak = partial(runtime.speak, text, identifier, wpm)
        thread = threading.Thread(target=stream.produce, args=(speak,), name="espeak-synth", daemon=True)
        thread.start()
        try:
            for block in stream:
                # should_stop is polled here, on the caller's thread, so it need not be thread-safe;
                # closing the stream makes the library's next callback abort the utterance.
                if should_stop():
                    return
                yield block
        finally:
            stream.close()
            thread.join()
