"""The inference worker pool: processes that run the engines, a fair scheduler, cancellation, respawn."""

from .pool import Job, WorkerPool

__all__ = ["Job", "WorkerPool"]
