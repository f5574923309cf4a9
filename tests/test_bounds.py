"""Cheap text must not buy expensive work: each chunk's audio bound and each worker's memory bound."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psutil
import pytest
from structlog.testing import capture_logs

from streamer.engines.base import SynthesisRequest, audio_bound_s
from streamer.errors import EngineError
from streamer.pool import Job, WorkerPool

from .conftest import TIMESCALE, running_server
from .helpers import Client

TATWEEL = "\u0640" * 50  # 100 bytes that espeak reads as 57 s of audio, and piper as 80 s (1.6 GB)
JOE = "en_US-joe-medium"


async def drain(job: Job) -> float:
    seconds = 0.0
    async for rate, block in job.blocks():
        seconds += len(block) / rate
    return seconds


async def started(pool: WorkerPool) -> WorkerPool:
    await pool.start()
    assert await pool.wait_ready(60 * TIMESCALE)
    return pool


def test_the_audio_bound_grows_with_the_text_and_a_slower_speed() -> None:
    assert audio_bound_s("Hi.", 1.0, per_char_s=1.0, floor_s=5.0) == 5.0
    assert audio_bound_s("x" * 50, 1.0, per_char_s=1.0, floor_s=5.0) == 50.0
    assert audio_bound_s("x" * 50, 0.5, per_char_s=1.0, floor_s=5.0) == 100.0
    assert audio_bound_s("x" * 50, 1.0, per_char_s=0.0, floor_s=5.0) == 0.0  # off


async def test_espeak_chunk_past_its_audio_bound_is_stopped_and_fails() -> None:
    pool = await started(WorkerPool(workers=1, engines_settings={}, preload=["espeak"], max_queue=4))
    try:
        job = pool.submit("s", "espeak", SynthesisRequest(text=TATWEEL, voice="en-us"), first=True)
        assert job.request.max_audio_s == 50.0
        with pytest.raises(EngineError, match=r"more than 50 s of audio for 50 characters"):
            await drain(job)
        # the worker is fine and speaks normal text as before
        normal = pool.submit("s", "espeak", SynthesisRequest(text="Still fine.", voice="en-us"), first=True)
        assert 0.3 < await drain(normal) < 5
    finally:
        await pool.close()


async def test_a_bound_stops_espeak_mid_chunk_with_the_audio_before_it_sent() -> None:
    pool = await started(WorkerPool(workers=1, engines_settings={}, preload=["espeak"], max_queue=4))
    try:
        text = "A sentence of ordinary words, spoken at an ordinary pace. " * 4
        request = SynthesisRequest(text=text, voice="en-us", max_audio_s=2.0)  # a caller's own bound wins
        job = pool.submit("s", "espeak", request, first=True)
        seconds = 0.0
        with pytest.raises(EngineError, match="more than 2 s of audio"):
            async for rate, block in job.blocks():
                seconds += len(block) / rate
        assert 1.5 < seconds <= 2.0
    finally:
        await pool.close()


@pytest.mark.piper
async def test_piper_refuses_a_chunk_whose_audio_would_pass_its_bound_before_synthesizing_it() -> None:
    pytest.importorskip("piper")
    pool = await started(
        WorkerPool(workers=1, engines_settings={"piper": {"threads": 1}}, preload=["piper"], max_queue=4)
    )
    try:
        worker = psutil.Process(pool.worker_pids()[0])
        before = worker.memory_info().rss
        began = time.perf_counter()
        job = pool.submit("s", "piper", SynthesisRequest(text=TATWEEL, voice=JOE), first=True)
        with pytest.raises(EngineError, match="more than 50 s of audio for 50 characters"):
            await drain(job)
        assert time.perf_counter() - began < 2 * TIMESCALE  # it took 9 s to synthesize
        assert worker.memory_info().rss - before < 100 * 2**20  # it took 1.6 GB
        normal = pool.submit("s", "piper", SynthesisRequest(text="Still fine.", voice=JOE), first=True)
        assert 0.3 < await drain(normal) < 5
    finally:
        await pool.close()


async def test_a_worker_over_its_memory_bound_is_replaced_between_jobs_and_no_chunk_is_lost() -> None:
    # 1 MB: every worker is over it after its first job, so each job runs on a fresh worker.
    pool = await started(
        WorkerPool(workers=1, engines_settings={}, preload=["espeak"], max_queue=8, max_worker_rss_mb=1)
    )
    try:
        pids = set(pool.worker_pids())
        with capture_logs() as logs:
            jobs = [
                pool.submit(
                    "s", "espeak", SynthesisRequest(text=f"Chunk number {n}.", voice="en-us"), first=True
                )
                for n in range(3)
            ]
            for job in jobs:
                assert await asyncio.wait_for(drain(job), 60 * TIMESCALE) > 0.3
            for _ in range(400):  # the last one is replaced after its job too
                if len(pool.worker_pids()) == 1 and pool.status()["ready_workers"] == 1:
                    break
                await asyncio.sleep(0.05)
            pids.update(pool.worker_pids())
        assert pool.recycles == 3 and pool.restarts == 0
        recycled = [entry for entry in logs if entry["event"] == "worker_recycled"]
        assert len(recycled) == 3 and all(entry["rss_mb"] > 1 for entry in recycled)
        # each job on a fresh process: the first, two respawned ones, and a fourth is ready for the next
        assert len({entry["pid"] for entry in recycled} | pids) == 4
    finally:
        await pool.close()


async def test_a_worker_under_its_memory_bound_stays() -> None:
    pool = await started(WorkerPool(workers=1, engines_settings={}, preload=["espeak"], max_queue=8))
    try:
        pid = pool.worker_pids()
        await drain(pool.submit("s", "espeak", SynthesisRequest(text="Hello.", voice="en-us"), first=True))
        assert pool.worker_pids() == pid and pool.recycles == 0
    finally:
        await pool.close()


async def test_a_chunk_over_its_audio_bound_is_the_turns_engine_error_and_a_one_shots_error(
    tmp_path: Path,
) -> None:
    """End to end through a real server: a bound set low enough that ordinary speech passes it."""
    config = {
        "tts": {"engine": "espeak"},
        "pool": {"workers": 1, "max_audio_s_per_char": 0.01, "max_audio_floor_s": 0.5},
    }
    sentence = "This sentence takes a few seconds to say, far more than half a second."
    with running_server(tmp_path, config) as server:
        async with await Client.connect(server.ws_url) as client:
            await client.start()
            turn = await client.say(sentence)
            errors = turn.of_type("error")  # one per chunk: the sentence is cut in two
            assert errors and {(e["code"], e["fatal"]) for e in errors} == {("engine_error", False)}
            assert "produced more than" in errors[0]["message"] and errors[0]["text_start"] == 0
            assert turn.done["type"] == "done"
            ping = {"type": "ping", "id": 1}
            await client.send(ping)
            assert (await client.expect("pong"))["id"] == 1  # the session goes on
        answer = httpx.post(f"{server.http_url}/api/v1/synth", json={"text": sentence}, timeout=30)
        assert answer.status_code == 500 and answer.json()["error_type"] == "engine_error"
