"""The inference worker pool: processes that run the engines, a fair scheduler, cancellation, respawn."""

from .job import Job
from .pool import WorkerPool

__all__ = ["Job", "WorkerPool"]
