"""The worker pool with real worker processes and the espeak engine: order, fairness, cancel, death."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from streamer.engines.base import SynthesisRequest
from streamer.errors import OverloadedError, WorkerDied
from streamer.pool import Job, WorkerPool

from .conftest import TIMESCALE

LONG = " ".join(["This sentence is long enough to keep a worker busy for a little while."] * 40)


async def drain(job: Job) -> tuple[int, dict]:
    samples = 0
    async for _, block in job.blocks():
        samples += len(block)
    return samples, job.timings


@pytest.fixture
async def pool() -> WorkerPool:
    pool = WorkerPool(workers=1, engines_settings={}, preload=["espeak"], max_queue=3)
    await pool.start()
    assert await pool.wait_ready(30 * TIMESCALE)
    yield pool
    await pool.close()


def request(text: str) -> SynthesisRequest:
    return SynthesisRequest(text=text, voice="en-us")


async def test_first_chunks_go_first_and_sessions_take_turns(pool: WorkerPool) -> None:
    blocker = pool.submit("s0", "espeak", request(LONG), first=True)
    later_a1 = pool.submit("a", "espeak", request("A one."), first=False)
    later_a2 = pool.submit("a", "espeak", request("A two."), first=False)
    later_b1 = pool.submit("b", "espeak", request("B one."), first=False)
    first_c = pool.submit("c", "espeak", request("C first."), first=True)
    jobs = [blocker, later_a1, later_a2, later_b1, first_c]
    await asyncio.gather(*(drain(j) for j in jobs))
    order = sorted(jobs, key=lambda j: j.started_at)
    assert order[0] is blocker
    assert order[1] is first_c, "a turn's first chunk jumps ahead of later chunks"
    # a and b have not been served yet; a was submitted first, then b gets its turn before a's second chunk.
    assert order[2:] == [later_a1, later_b1, later_a2]


@pytest.fixture
async def pool2() -> WorkerPool:
    pool = WorkerPool(workers=2, engines_settings={}, preload=["espeak"], max_queue=8)
    pool.cores = 2  # what follows is about a 2-core machine, whatever this one has
    await pool.start()
    assert await pool.wait_ready(30 * TIMESCALE)
    yield pool
    await pool.close()


async def test_a_chunk_may_use_the_cores_of_idle_workers(pool2: WorkerPool) -> None:
    alone = pool2.submit("a", "espeak", request("Alone."), first=True)
    await drain(alone)
    assert alone.request.threads == 2  # no other worker busy: every core
    blocker = pool2.submit("b", "espeak", request(LONG), first=True)
    # espeak is not a wide engine: its chunks hold one core whatever they were told, so even a later
    # chunk goes at once, beside it
    beside = pool2.submit("c", "espeak", request("Beside a busy worker."), first=False)
    await drain(beside)
    assert not blocker.timings, "the long chunk is still being synthesized"
    pool2.cancel(blocker)
    assert blocker.request.threads == 2
    assert beside.request.threads == 1


async def test_later_chunks_keep_off_the_cores_of_a_wide_chunk(pool2: WorkerPool) -> None:
    pool2.chunk_threads = {"espeak": 2}  # the pool's bookkeeping is the same whatever the engine does with it
    wide = pool2.submit("a", "espeak", request(LONG), first=True)
    later = pool2.submit("b", "espeak", request("A later chunk."), first=False)
    first = pool2.submit("c", "espeak", request("A first chunk."), first=True)
    await drain(first)  # a first chunk goes at once, on one core, beside the wide one
    assert wide.request.threads == 2 and first.request.threads == 1
    assert later.worker is None, "a later chunk waits while a chunk holds every core"
    pool2.cancel(wide)
    await drain(later)
    assert later.started_at > first.started_at
    assert later.request.threads == 2  # alone: every core is free again

    # two later chunks waiting behind a wide one: each gets one core, side by side, when it ends
    wide = pool2.submit("a", "espeak", request(LONG), first=True)
    pair = [pool2.submit(s, "espeak", request("A later chunk."), first=False) for s in ("b", "c")]
    await asyncio.sleep(0.05)
    assert [job.worker for job in pair] == [None, None]
    pool2.cancel(wide)
    await asyncio.gather(*(drain(job) for job in pair))
    assert [job.request.threads for job in pair] == [1, 1]


async def test_admission_refuses_when_the_queue_is_full(pool: WorkerPool) -> None:
    jobs = [pool.submit("s", "espeak", request(LONG), first=False) for _ in range(4)]  # 1 running + 3 waiting
    with pytest.raises(OverloadedError):
        pool.admit()
    for job in jobs:
        pool.cancel(job)


async def test_cancel_aborts_a_running_synthesis_mid_utterance(pool: WorkerPool) -> None:
    whole, _ = await drain(pool.submit("s", "espeak", request(LONG), first=True))
    job = pool.submit("s", "espeak", request(LONG), first=True)
    results = job.results
    first = await asyncio.wait_for(results.get(), 10 * TIMESCALE)
    assert first[0] == "block"
    pool.cancel(job)
    while (await asyncio.wait_for(results.get(), 10 * TIMESCALE))[0] == "block":
        pass
    assert job.timings["cancelled"] is True
    assert job.timings["samples"] < whole / 2
    # The worker goes on to the next job as usual.
    samples, _ = await drain(pool.submit("s", "espeak", request("Still fine."), first=True))
    assert samples > 0


async def test_cancel_of_a_waiting_job_means_it_never_runs(pool: WorkerPool) -> None:
    blocker = pool.submit("s", "espeak", request(LONG), first=True)
    waiting = pool.submit("s", "espeak", request("Never spoken."), first=False)
    pool.cancel(waiting)
    assert pool.queue_depth == 0
    await drain(blocker)
    assert waiting.started_at is None


async def test_a_dead_worker_fails_its_job_and_is_replaced(pool: WorkerPool) -> None:
    job = pool.submit("s", "espeak", request(LONG * 3), first=True)
    await asyncio.wait_for(job.results.get(), 10 * TIMESCALE)
    os.kill(pool.worker_pids()[0], signal.SIGKILL)
    with pytest.raises(WorkerDied):
        await drain(job)
    assert await pool.wait_ready(30 * TIMESCALE)
    for _ in range(200):
        if pool.status()["ready_workers"] == 1:
            break
        await asyncio.sleep(0.05)
    samples, _ = await drain(pool.submit("s", "espeak", request("Back again."), first=True))
    assert samples > 0 and pool.restarts == 1
