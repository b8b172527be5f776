"""The queue seam: wake-ups for task managers, carried by TaskTiger on Redis.

Redis only carries wake-ups: every job lives in Postgres, and the reconciler
re-enqueues anything Redis lost.

The API enqueues and a worker process serves, so this module holds both ends of the
seam and nothing of supervision: TaskTiger imports a task by its dotted path, so
``supervise`` below is a module-level function whose body is whatever handler the
serving process installed (``install_task_handlers``). The API can name the task
without importing container backends, and the worker decides what running it means.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Protocol

import redis
from tasktiger import JobTimeoutException, Task, TaskTiger
from tasktiger.retry import fixed

from taskmanager.settings import Settings


class Enqueuer(Protocol):
    """Wakes a manager for a job (TaskTiger in production)."""

    def enqueue(
        self,
        job_id: uuid.UUID,
        *,
        is_batch: bool,
        max_runtime_s: float,
        delay_s: float | None = None,
        wake_key: str | None = None,
    ) -> None:
        """Wake a manager for ``job_id`` now (or after ``delay_s``)."""

    def is_queued(self, job_id: uuid.UUID, *, is_batch: bool) -> bool:
        """Tell whether a wake-up for ``job_id`` is pending."""


class TaskHandlers(Protocol):
    """What a worker process does when a task reaches it."""

    def supervise(self, job_id: uuid.UUID) -> None:
        """Drive the job's current attempt as far as this process can."""


# The handlers of this process, set once by the worker before it serves the queues: a
# module global because TaskTiger calls tasks by dotted path, not through an object.
_handlers: TaskHandlers | None = None


def install_task_handlers(handlers: TaskHandlers) -> None:
    """Make ``handlers`` run this process's tasks."""
    global _handlers
    _handlers = handlers


def supervise(job_id: str, wake_key: str | None = None) -> None:
    """TaskTiger task: drive one job's current attempt in this worker process.

    ``wake_key`` only makes the queue entry distinct (see ``TaskTigerEnqueuer``).
    """
    if _handlers is None:
        raise RuntimeError("no task handlers installed: tasks run inside `clipyard worker`")
    _handlers.supervise(uuid.UUID(job_id))


def create_redis(redis_url: str) -> redis.Redis[str]:
    """Connect to Redis the way TaskTiger needs (decoded responses)."""
    connection: redis.Redis[str] = redis.Redis.from_url(redis_url, decode_responses=True)
    return connection


def tasktiger_config(settings: Settings) -> dict[str, Any]:
    """Return TaskTiger's config dict for ``settings``; each knob says why it is set."""
    return {
        # A worker whose heartbeat is this old is presumed dead and its task requeued
        # (only tasks that retry on JobTimeoutException come back; supervise does).
        "ACTIVE_TASK_UPDATE_TIMEOUT": max(60, int(settings.lease_ttl_s * 2)),
        # How often a worker refreshes its heartbeat on the task it runs.
        "ACTIVE_TASK_UPDATE_TIMER": 10,
        # Default hard timeout; supervise sets its own from the job's deadline.
        "DEFAULT_HARD_TIMEOUT": 300,
        # Keep failed task records a week for debugging; Postgres holds the real history.
        "ERROR_TASK_EXPIRATION": 7 * 24 * 3600,
        # Workers poll this often when no pub/sub wake-up arrives.
        "SELECT_TIMEOUT": 1.0,
    }


def create_tiger(settings: Settings, connection: redis.Redis[str]) -> TaskTiger:
    """Create the TaskTiger instance for ``connection``."""
    return TaskTiger(
        connection=connection,
        config=tasktiger_config(settings),
        setup_structlog=False,  # configure_logging already did, with redaction
    )


class TaskTigerEnqueuer:
    """Enqueue supervision wake-ups on TaskTiger; Postgres stays the source of truth."""

    def __init__(self, tiger: TaskTiger, settings: Settings) -> None:
        self.tiger = tiger
        self.settings = settings

    def queue_for(self, is_batch: bool) -> str:
        """Return the queue for batch or interactive work."""
        return self.settings.batch_queue if is_batch else self.settings.interactive_queue

    def _task(
        self, job_id: uuid.UUID, queue: str, hard_timeout_s: float, wake_key: str | None = None
    ) -> Task:
        # Unique: one entry per job and wake key however often it is woken; the id is
        # derived from the function and its arguments, so it can be looked up (is_queued).
        # A wake key gives a distinct entry: TaskTiger parks a unique task whose id is
        # still "active" (e.g. under a dead worker) until that entry expires, which
        # would hold an adoption back by a minute.
        args = [str(job_id)] if wake_key is None else [str(job_id), wake_key]
        return Task(
            self.tiger,
            supervise,
            args=args,
            queue=queue,
            unique=True,
            hard_timeout=hard_timeout_s,
            retry_on=[JobTimeoutException],
            retry_method=fixed(delay=1, max_retries=1000),
        )

    def enqueue(
        self,
        job_id: uuid.UUID,
        *,
        is_batch: bool,
        max_runtime_s: float,
        delay_s: float | None = None,
        wake_key: str | None = None,
    ) -> None:
        """Wake a manager for ``job_id`` now (or after ``delay_s``).

        ``wake_key`` names a wake-up that must not merge with the job's usual entry
        (adopting a stale run, handing a run over).
        """
        # The task must outlive the container's deadline plus the stop grace and the
        # finishing steps, or TaskTiger would kill a healthy supervisor.
        hard_timeout = max_runtime_s + self.settings.stop_grace_s + 120
        task = self._task(job_id, self.queue_for(is_batch), hard_timeout, wake_key)
        when = timedelta(seconds=delay_s) if delay_s else None
        task.delay(when=when)

    def is_queued(self, job_id: uuid.UUID, *, is_batch: bool) -> bool:
        """Tell whether Redis holds a supervise entry for ``job_id`` in any state."""
        task = self._task(job_id, self.queue_for(is_batch), 0)
        return bool(self.tiger.connection.exists(task_key(self.tiger, task.id)))


def task_key(tiger: TaskTiger, task_id: str) -> str:
    """Return the Redis key of a task's record (TaskTiger's own layout: PREFIX:task:ID)."""
    return f"{tiger.config['REDIS_PREFIX']}:task:{task_id}"
