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

import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import redis
from tasktiger import JobTimeoutException, Task, TaskTiger
from tasktiger.exceptions import TaskNotFound
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

    def is_queued(
        self, job_id: uuid.UUID, *, is_batch: bool, due_by: datetime | None = None
    ) -> bool:
        """Tell whether a wake-up for ``job_id`` will run by ``due_by`` (None: now)."""


class TaskHandlers(Protocol):
    """What a worker process does when a task reaches it."""

    def supervise(self, job_id: uuid.UUID) -> None:
        """Drive the job's current attempt as far as this process can."""


# The handlers of this process, set once by the worker before it serves the queues: a
# module global because TaskTiger calls tasks by dotted path, not through an object.
_handlers: TaskHandlers | None = None


def install_task_handlers(handlers: TaskHandlers | None) -> None:
    """Make ``handlers`` run this process's tasks (None: this process serves none)."""
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
        (adopting a stale run, handing a run over). An entry of the same id that sits in
        the error set is replaced, and one scheduled later than asked is brought forward:
        TaskTiger's own ``delay`` would leave both as they are.
        """
        # The task must outlive the container's whole life, or TaskTiger would kill a
        # healthy supervisor: provisioning, the deadline, the stop grace and the removal,
        # plus a margin for the finishing steps.
        settings = self.settings
        hard_timeout = (
            settings.aci_start_timeout_s
            + max_runtime_s
            + settings.stop_grace_s
            + settings.aci_delete_timeout_s
            + 120
        )
        task = self._task(job_id, self.queue_for(is_batch), hard_timeout, wake_key)
        run_at = time.time() + (delay_s or 0.0)
        entry = self._entry(task)
        # Each step may find the entry moved meanwhile (a worker took it): then carry on.
        if entry.error is not None:
            with contextlib.suppress(TaskNotFound):
                Task.from_id(self.tiger, task.queue, "error", task.id).delete()
        elif entry.scheduled is not None and entry.scheduled > run_at:
            with contextlib.suppress(TaskNotFound):
                task.update_scheduled_time(timedelta(seconds=delay_s or 0.0))
                return
        task.delay(when=timedelta(seconds=delay_s) if delay_s else None)

    def is_queued(
        self, job_id: uuid.UUID, *, is_batch: bool, due_by: datetime | None = None
    ) -> bool:
        """Tell whether a wake-up for ``job_id`` will run by ``due_by`` (None: now).

        Waiting or running counts. An entry in the error set does not (TaskTiger never
        runs it again by itself), nor one scheduled later than the job is due: for the
        reconciler, "has a queue entry" must mean "will run".
        """
        entry = self._entry(self._task(job_id, self.queue_for(is_batch), 0))
        if entry.queued is not None or entry.active is not None:
            return True
        due = time.time() if due_by is None else due_by.timestamp()
        # A second's slack: the entry written for a due time scores that time, give or take.
        return entry.scheduled is not None and entry.scheduled <= due + 1.0

    def _entry(self, task: Task) -> QueueEntry:
        """Read where the task's entry is (each TaskTiger state's score, or None)."""
        pipeline = self.tiger.connection.pipeline()
        for state in _STATES:
            pipeline.zscore(f"{self.tiger.config['REDIS_PREFIX']}:{state}:{task.queue}", task.id)
        scores = pipeline.execute()
        return QueueEntry(*(None if score is None else float(score) for score in scores))


# TaskTiger's task states, in the order of ``QueueEntry``'s fields.
_STATES = ("queued", "active", "scheduled", "error")


@dataclass(frozen=True)
class QueueEntry:
    """Where a task's entry is: the score (unix time) in each TaskTiger state, or None."""

    queued: float | None
    active: float | None
    scheduled: float | None
    error: float | None
