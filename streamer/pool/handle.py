"""What the pool holds for each worker process: its process, pipe, cancel flag, state and jobs."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from .job import Job
from .messages import FromWorker, Stop, ToWorker
from .worker import worker_main


class WorkerState(enum.Enum):
    STARTING = "starting"  # spawned: loading its engines, takes no job yet
    READY = "ready"  # sent Ready: takes jobs
    RECYCLING = "recycling"  # over pool.max_worker_rss_mb after a job: asked to stop, takes no job
    EXITED = "exited"  # its process ended (its pipe closed); the slot gets a new handle


@dataclass(eq=False)
class WorkerHandle:
    """One worker process, seen from the pool. Its state and jobs change on the event loop only."""

    index: int  # its slot in the pool; a respawned worker takes the same one
    process: SpawnProcess
    conn: Connection
    cancel: Synchronized[int]  # id of the job to abort; 0: none (see worker.py)
    state: WorkerState = WorkerState.STARTING
    jobs: list[Job] = field(default_factory=list)  # one, or a batch; empty when idle
    engines: list[str] = field(default_factory=list)  # loaded and warmed
    load_errors: dict[str, str] = field(default_factory=dict)  # engine -> why it failed to load
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def spawn(
        cls,
        ctx: SpawnContext,
        index: int,
        engines_settings: dict[str, dict[str, Any]],
        preload: list[str],
        threads: int,
        nice: int,
    ) -> WorkerHandle:
        """Start a worker process; it sends Ready once its preloaded engines are loaded."""
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        cancel = ctx.RawValue("q", 0)
        process = ctx.Process(
            target=worker_main,
            args=(child_conn, cancel, engines_settings, list(preload), threads, nice),
            name=f"streamer-worker-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # the child holds its own end: EOF here means the child is gone
        return cls(index=index, process=process, conn=parent_conn, cancel=cancel)

    @property
    def ready(self) -> bool:
        return self.state is WorkerState.READY

    @property
    def idle(self) -> bool:
        return self.ready and not self.jobs

    def job(self, job_id: int) -> Job | None:
        return next((job for job in self.jobs if job.id == job_id), None)

    def send(self, message: ToWorker) -> None:
        # The worker may have died since its last message: its reader thread reports that.
        with contextlib.suppress(OSError):
            self.conn.send(message)

    def abort(self, job_id: int) -> None:
        """Stop the running job ``job_id`` mid-synthesis (the engine polls this between blocks)."""
        self.cancel.value = job_id

    def clear_abort(self) -> None:
        self.cancel.value = 0

    def start_reader(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[WorkerHandle, FromWorker], None],
        on_exit: Callable[[WorkerHandle], None],
    ) -> None:
        """A thread of blocking reads from the pipe, each message handed to ``loop``; ``on_exit`` at EOF.
        The event loop never blocks on a pipe."""
        threading.Thread(
            target=self._read_loop,
            args=(loop, on_message, on_exit),
            name=f"streamer-pool-reader-{self.index}",
            daemon=True,
        ).start()

    def _read_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[WorkerHandle, FromWorker], None],
        on_exit: Callable[[WorkerHandle], None],
    ) -> None:
        while True:
            try:
                message: FromWorker = self.conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(on_message, self, message)
            except RuntimeError:
                return  # loop closed
        with contextlib.suppress(RuntimeError):  # loop closed
            loop.call_soon_threadsafe(on_exit, self)

    def stop(self) -> None:
        self.send(Stop())

    def join(self, timeout: float) -> None:
        """Wait for the process to end after ``stop()``, then kill it; close the pipe. Blocking."""
        self.process.join(timeout)
        if self.process.is_alive():  # workers ignore SIGTERM (see worker.py): straight to SIGKILL
            self.process.kill()
            self.process.join(1.0)
        self.conn.close()

    def status(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.process.pid,
            "ready": self.ready,
            "session": self.jobs[0].session if self.jobs else None,
            "job": self.jobs[0].id if self.jobs else None,
            "batch": len(self.jobs),
        }
