"""The worker pool: processes that synthesize, a fair scheduler in front of them, and cancellation.

Scheduling: a free worker takes the waiting job with the smallest key
``(not first chunk of its turn, when its session was last served, submission order)``: first chunks
of turns jump ahead of later ones, and sessions take turns (least recently served first), so one
session with a long text cannot starve the others.

Each worker has a reader thread that turns pipe messages into calls on the event loop; the event
loop itself never blocks on a pipe and never runs engine code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import psutil
import structlog

from ..engines.base import SynthesisRequest, audio_bound_s, usable_cores
from ..errors import EngineError, OverloadedError, WorkerDied, error_for_code
from .handle import WorkerHandle, WorkerState
from .job import Job, JobResult
from .messages import Block, Done, Failed, FromWorker, Load, Loaded, Ready, Synth, SynthBatch

log = structlog.get_logger(__name__)

_STOP_JOIN_S = 2.0
_STABLE_S = 5.0  # a worker that dies sooner than this after starting is crash-looping: back off
_MAX_BACKOFF_S = 30.0


class WorkerPool:
    def __init__(
        self,
        workers: int,
        engines_settings: dict[str, dict[str, Any]],
        preload: list[str],
        max_queue: int,
        max_batch: int = 1,
        nice: int = 0,
        max_audio_s_per_char: float = 1.0,
        max_audio_floor_s: float = 5.0,
        max_worker_rss_mb: int = 2048,
    ) -> None:
        self.cores = usable_cores()
        # Engines whose chunks run on more than one core when given them, and on how many at most
        # (Capabilities.threads); set by the runtime. Other engines' chunks hold one core.
        self.chunk_threads: dict[str, int] = {}
        self.size = workers or self.cores
        self.max_batch = max_batch
        self.nice = nice
        self.engines_settings = engines_settings
        self.preload = list(preload)
        self.max_queue = max_queue
        # Each chunk's audio bound (engines.base.audio_bound_s) and each worker's memory bound (0: off).
        self.max_audio_s_per_char = max_audio_s_per_char
        self.max_audio_floor_s = max_audio_floor_s
        self.max_worker_rss_mb = max_worker_rss_mb
        self._ctx = mp.get_context("spawn")
        self._workers: list[WorkerHandle] = []
        self._waiting: list[Job] = []
        self._served: dict[str, int] = {}
        self._serve_counter = itertools.count()
        self._job_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._ready_event = asyncio.Event()
        self.restarts = 0
        self.recycles = 0  # workers replaced between jobs for holding more than max_worker_rss_mb
        self.jobs_done = 0
        self._quick_deaths: dict[int, int] = {}  # worker index -> deaths in a row within _STABLE_S
        self.job_observers: list[Callable[[Job], None]] = []  # called with each job done (metrics)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for index in range(self.size):
            self._spawn(index)

    async def wait_ready(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._ready_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def ready(self) -> bool:
        return any(w.ready for w in self._workers)

    def _spawn(self, index: int) -> None:
        assert self._loop is not None
        threads = max(1, self.cores // self.size)
        worker = WorkerHandle.spawn(self._ctx, index, self.engines_settings, self.preload, threads, self.nice)
        if index < len(self._workers):
            self._workers[index] = worker
        else:
            self._workers.append(worker)
        worker.start_reader(self._loop, self._on_message, self._on_exit)
        log.debug("worker_started", worker=index, pid=worker.process.pid)

    async def close(self) -> None:
        """Stop every worker: ask, wait a little, then terminate. Pending jobs fail."""
        self._closing = True
        for job in self._waiting:
            self._finish(job, ("error", EngineError("the server is shutting down")))
        self._waiting.clear()
        for worker in self._workers:
            for job in list(worker.jobs):
                self.cancel(job)
            worker.stop()
        await asyncio.to_thread(self._join_all)

    def _join_all(self) -> None:
        deadline = time.monotonic() + _STOP_JOIN_S
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    # ---- figures -------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def busy_workers(self) -> int:
        return sum(1 for w in self._workers if w.jobs)

    def engine_state(self, engine: str) -> str:
        """healthy (a ready worker has it loaded), loading, or unhealthy (every worker failed to load it)."""
        ready = [w for w in self._workers if w.ready]
        if any(engine in w.engines for w in ready):
            return "healthy"
        if ready and all(engine in w.load_errors for w in ready):
            return "unhealthy"
        return "loading" if engine in self.preload else "on_demand"  # others load on first use

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.state is not WorkerState.EXITED and w.process.pid]

    def status(self) -> dict[str, Any]:
        return {
            "workers": self.size,
            "ready_workers": sum(1 for w in self._workers if w.ready),
            "busy_workers": self.busy_workers,
            "queue_depth": self.queue_depth,
            "max_queue": self.max_queue,
            "restarts": self.restarts,
            "recycles": self.recycles,
            "jobs_done": self.jobs_done,
            "worker_list": [w.status() for w in self._workers],
            "load_errors": {w.index: w.load_errors for w in self._workers if w.load_errors},
        }

    # ---- jobs ----------------------------------------------------------------------------------

    def admit(self) -> None:
        """Admission control at the start of a turn: refuse when the queue is full."""
        if self._closing:
            raise OverloadedError("the server is shutting down")
        if len(self._waiting) >= self.max_queue:
            raise OverloadedError(
                f"synthesis queue is full ({len(self._waiting)} chunks waiting); try again shortly",
                retry_after=1,
            )

    def submit(
        self, session: str, engine: str, request: SynthesisRequest, first: bool, batch_key: str | None = None
    ) -> Job:
        if self._closing:
            raise OverloadedError("the server is shutting down")
        if not request.max_audio_s:
            per_char, floor = self.max_audio_s_per_char, self.max_audio_floor_s
            bound = audio_bound_s(request.text, request.speed, per_char, floor)
            request = replace(request, max_audio_s=bound)
        job = Job(
            id=next(self._job_ids),
            session=session,
            engine=engine,
            request=request,
            first=first,
            batch_key=batch_key,
        )
        self._served.setdefault(session, -1)
        self._waiting.append(job)
        self._dispatch()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a waiting job, or tell its worker to abort; its result queue gets nothing more."""
        if job.finished or job.cancelled:
            return
        job.cancelled = True
        if job.worker is None:
            with contextlib.suppress(ValueError):
                self._waiting.remove(job)
            job.finished = True
        elif len((worker := self._workers[job.worker]).jobs) == 1:
            worker.abort(job.id)  # the worker aborts mid-synthesis
        # In a batch the others go on: this job's results are discarded as they arrive.

    def load_engine(self, engine: str) -> None:
        """Have every worker (and every future one) load ``engine`` now, between jobs."""
        if engine not in self.preload:
            self.preload.append(engine)
        for worker in self._workers:
            if worker.state is not WorkerState.EXITED:
                worker.send(Load(engine))

    def forget_session(self, session: str) -> None:
        self._served.pop(session, None)

    def _dispatch(self) -> None:
        while self._waiting:
            worker = next((w for w in self._workers if w.idle), None)
            if worker is None:
                return
            order = sorted(self._waiting, key=lambda j: (not j.first, self._served.get(j.session, -1), j.id))
            free = self._free_cores()
            if free < 1 and self._wide_running():
                # A chunk runs on the idle cores it was given: later chunks wait for it (they have its
                # audio's length to be ready); a first chunk goes anyway, its listener is waiting.
                order = [job for job in order if job.first]
                if not order:
                    return
            lead = order[0]
            batch = [lead]
            if self.max_batch > 1 and lead.batch_key is not None:
                batch += [j for j in order[1:] if j.batch_key == lead.batch_key][: self.max_batch - 1]
            started = time.perf_counter()
            for job in batch:
                self._waiting.remove(job)
                self._served[job.session] = next(self._serve_counter)
                job.worker = worker.index
                job.started_at = started
            worker.jobs = batch
            if len(batch) == 1:
                # A chunk that starts while other workers are idle may use their cores too (piper runs it
                # on a wider ONNX session), less one for each waiting chunk that could use it: a turn's
                # first chunk counts only other first chunks (later ones wait for it); a later chunk
                # counts every waiting chunk (side by side, one core each, gets more audio out of them).
                rivals = sum(1 for j in self._waiting if j.first or not lead.first)
                threads = max(1, free - rivals)
                lead.request = replace(lead.request, threads=threads)
                worker.send(Synth(lead.id, lead.engine, lead.request))
            else:
                ids, requests = tuple(j.id for j in batch), tuple(j.request for j in batch)
                worker.send(SynthBatch(ids, lead.engine, requests))

    def _held_cores(self, worker: WorkerHandle) -> int:
        jobs = worker.jobs
        if len(jobs) == 1:
            return min(max(1, jobs[0].request.threads), self.chunk_threads.get(jobs[0].engine, 1))
        return 1 if jobs else 0

    def _free_cores(self) -> int:
        return self.cores - sum(self._held_cores(w) for w in self._workers)

    def _wide_running(self) -> bool:
        return any(self._held_cores(w) > 1 for w in self._workers)

    # ---- worker messages (on the event loop) ---------------------------------------------------

    def _on_message(self, worker: WorkerHandle, message: FromWorker) -> None:
        match message:
            case Ready():
                worker.state = WorkerState.READY
                worker.engines, worker.load_errors = list(message.engines), dict(message.errors)
                if message.errors:
                    log.warning("worker_engine_load_failed", worker=worker.index, errors=message.errors)
                self._warn_if_over_memory_at_start(worker)
                self._ready_event.set()
                self._dispatch()
            case Loaded(engine=engine, error=None):
                worker.engines.append(engine)
                worker.load_errors.pop(engine, None)
            case Loaded(engine=engine, error=str(error)):
                worker.load_errors[engine] = error
                log.warning("worker_engine_load_failed", worker=worker.index, engine=engine, error=error)
            case Block() | Done() | Failed():
                self._on_job_message(worker, message)

    def _on_job_message(self, worker: WorkerHandle, message: Block | Done | Failed) -> None:
        job = worker.job(message.job_id)
        if job is None:
            return  # a late message of a job already given up
        match message:
            case Block():
                if not job.cancelled:
                    block = np.frombuffer(message.pcm, dtype=np.float32)
                    job.results.put_nowait(("block", message.sample_rate, block))
                return
            case Done():
                job.timings = message.timings
                self._finish(job, ("done", message.timings))
                for observe in self.job_observers:
                    observe(job)
            case Failed():
                self._finish(job, ("error", error_for_code(message.code, message.message)))
        worker.jobs.remove(job)
        self.jobs_done += 1
        if not worker.jobs:
            worker.clear_abort()
            self._recycle_if_over_memory(worker)
            self._dispatch()

    def _rss_mb(self, worker: WorkerHandle) -> int | None:
        try:
            return int(psutil.Process(worker.process.pid).memory_info().rss >> 20)
        except (psutil.Error, ValueError):
            return None  # gone already: its reader thread reports the exit

    def _warn_if_over_memory_at_start(self, worker: WorkerHandle) -> None:
        # A worker that starts over the bound is recycled after every job: say so once per start.
        rss_mb = self._rss_mb(worker) if self.max_worker_rss_mb else None
        if rss_mb is not None and rss_mb > self.max_worker_rss_mb:
            log.warning(
                "worker_over_rss_limit_at_start",
                worker=worker.index,
                rss_mb=rss_mb,
                max_worker_rss_mb=self.max_worker_rss_mb,
            )

    def _recycle_if_over_memory(self, worker: WorkerHandle) -> None:
        """An idle worker holding more than max_worker_rss_mb is stopped and respawned: engines keep the
        peak of their arenas (ONNX Runtime, torch), so one long chunk would hold its memory for good."""
        if not self.max_worker_rss_mb or worker.state is not WorkerState.READY:
            return
        rss_mb = self._rss_mb(worker)
        if rss_mb is None or rss_mb <= self.max_worker_rss_mb:
            return
        worker.state = WorkerState.RECYCLING
        worker.stop()
        self.recycles += 1
        log.info(
            "worker_recycled",
            worker=worker.index,
            pid=worker.process.pid,
            rss_mb=rss_mb,
            max_worker_rss_mb=self.max_worker_rss_mb,
        )

    def _on_exit(self, worker: WorkerHandle) -> None:
        if worker.state is WorkerState.EXITED:
            return
        recycled = worker.state is WorkerState.RECYCLING
        worker.state = WorkerState.EXITED
        jobs, worker.jobs = worker.jobs, []
        for job in jobs:
            self._finish(job, ("error", WorkerDied("the worker synthesizing this chunk exited")))
        if self._closing:
            return
        worker.process.join(0.1)
        if recycled:  # asked to stop while idle: no job lost and not a crash, so no backoff
            self._spawn(worker.index)
            return
        quick = time.monotonic() - worker.started_at < _STABLE_S
        deaths = self._quick_deaths.get(worker.index, 0) + 1 if quick else 0
        self._quick_deaths[worker.index] = deaths
        delay = min(_MAX_BACKOFF_S, 0.25 * 2 ** (deaths - 1)) if deaths else 0.0
        log.warning("worker_died", worker=worker.index, exitcode=worker.process.exitcode, respawn_in_s=delay)
        self.restarts += 1
        assert self._loop is not None
        self._loop.call_later(delay, self._respawn, worker.index)

    def _respawn(self, index: int) -> None:
        if not self._closing:
            self._spawn(index)

    def _finish(self, job: Job, item: JobResult) -> None:
        if job.finished and job.worker is None:
            return
        job.finished = True
        job.results.put_nowait(item)
