"""End an attempt: classify how it ended, bill it, save its log, retry or finish the job."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from taskmanager.backends.base import BackendError, ContainerState, ContainerStatus
from taskmanager.cost import PriceTable, container_cost
from taskmanager.models import Job, Run
from taskmanager.states import JobState, RunState
from taskmanager.storage import StorageError
from taskmanager.storage.keys import log_key, output_key
from taskmanager.supervision.admission import settle_batch, waiting_batch_jobs, wake_jobs
from taskmanager.supervision.containerlog import ContainerLog
from taskmanager.supervision.containerspec import OUTPUT_POSTER, OUTPUT_VIDEO
from taskmanager.supervision.progress import ProgressTracker
from taskmanager.supervision.runtime import Runtime
from taskmanager.transitions import (
    ConcurrentChange,
    lock_job_and_run,
    record_event,
    transition_job,
    transition_run,
)

log = structlog.get_logger(__name__)

# Backend details that another attempt cannot fix.
_PERMANENT_DETAILS = {
    "image_pull": "the container image could not be pulled: check the image name and registry",
    "provisioning_failed": "the container group could not be provisioned: check its spec",
}
# Failures of capacity, not of the job: retried without using up an attempt.
_CAPACITY_KINDS = frozenset({"evicted", "capacity"})

# The compositor's documented exit codes (see jobimages): 2 bad input, 3 storage.
EXIT_BAD_INPUT = 2
EXIT_STORAGE = 3


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended and whether another attempt could do better."""

    run_state: RunState
    failure_kind: str | None
    is_retryable: bool
    exit_code: int | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None
    # The backend's own advice on when to try again (Retry-After), if it gave one.
    retry_after_s: float | None = None
    # False when no container ever ran (refused, or cancelled first): nothing to bill.
    is_launched: bool = True

    @classmethod
    def _of(
        cls,
        status: ContainerStatus,
        run_state: RunState,
        failure_kind: str | None,
        *,
        is_retryable: bool,
        message: str | None,
    ) -> Outcome:
        return cls(
            run_state,
            failure_kind,
            is_retryable,
            exit_code=status.exit_code,
            message=message,
            started_at=status.started_at,
            finished_at=status.finished_at,
            peak_rss_mb=status.peak_rss_mb,
            cpu_seconds=status.cpu_seconds,
        )

    @classmethod
    def from_status(cls, status: ContainerStatus, tracker: ProgressTracker) -> Outcome:
        """Classify a container that ended on its own (or vanished).

        What the backend says about why (evicted, image pull) outranks how it ended.
        """
        message = tracker.error_message() or _tail_message(tracker)
        if status.detail in _PERMANENT_DETAILS:
            return cls._of(
                status, RunState.FAILED, status.detail, is_retryable=False,
                message=_PERMANENT_DETAILS[status.detail],
            )  # fmt: skip
        if status.detail == "evicted":
            return cls._of(
                status, RunState.FAILED, "evicted", is_retryable=True,
                message="Spot capacity was reclaimed (evicted)",
            )  # fmt: skip
        if status.state in (ContainerState.LOST, ContainerState.NOT_FOUND):
            return cls._of(
                status, RunState.LOST, "lost", is_retryable=True,
                message="the container vanished without an exit code",
            )  # fmt: skip
        code = status.exit_code
        if code == 0:
            return cls._of(status, RunState.SUCCEEDED, None, is_retryable=False, message=None)
        if code == EXIT_BAD_INPUT:
            return cls._of(
                status, RunState.FAILED, "bad_input", is_retryable=False, message=message
            )
        if code == EXIT_STORAGE:
            return cls._of(status, RunState.FAILED, "storage", is_retryable=True, message=message)
        kind = "killed" if status.detail in ("oom_or_killed", "oom", "killed") else "crash"
        message = message or f"the container exited with code {code}"
        return cls._of(status, RunState.FAILED, kind, is_retryable=True, message=message)

    @classmethod
    def stopped(cls, reason: str, status: ContainerStatus, tracker: ProgressTracker) -> Outcome:
        """Classify a container the manager stopped: cancelled, deadline or stalled."""
        if reason == "cancelled":
            return cls._of(
                status, RunState.CANCELLED, "cancelled", is_retryable=False, message="cancelled"
            )
        if reason == "deadline":
            return cls._of(
                status, RunState.TIMED_OUT, "deadline", is_retryable=False,
                message="the job ran past its max_runtime_s and was stopped",
            )  # fmt: skip
        return cls._of(
            status, RunState.TIMED_OUT, "stalled", is_retryable=True,
            message=f"no progress for too long ({tracker.done}/{tracker.total} done)",
        )  # fmt: skip

    @classmethod
    def not_launched(cls) -> Outcome:
        """Classify an attempt cancelled before its container was started."""
        return cls(
            RunState.CANCELLED, "cancelled", False, message="cancelled before launch",
            is_launched=False,
        )  # fmt: skip

    @classmethod
    def launch_failed(cls, error: BackendError) -> Outcome:
        """Classify a launch the backend refused: capacity and rate limits come back later."""
        kind = "capacity" if error.is_retryable else "launch"
        return cls(
            RunState.FAILED, kind, error.is_retryable, message=str(error),
            retry_after_s=error.retry_after_s, is_launched=False,
        )  # fmt: skip


def _tail_message(tracker: ProgressTracker) -> str | None:
    return tracker.tail[-1] if tracker.tail else None


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Return the wait before the next attempt: exponential, capped, with jitter.

    "Equal jitter": half the exponential delay is kept, half is random, so retries of
    many jobs that failed together spread out but none retries at once.
    """
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return float(delay / 2 + random.uniform(0, delay / 2))  # noqa: S311 - not for security


@dataclass(frozen=True)
class AttemptRef:
    """What identifies an attempt, known to its manager without asking the database."""

    run_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    container_name: str


def record_progress(session: Session, ref: AttemptRef, tracker: ProgressTracker) -> bool:
    """Record the progress reported since the last call as an event; False if none.

    The caller's transaction holds the job's row lock and stores ``tracker.fraction``.
    """
    if not tracker.has_new_progress:
        return False
    tracker.has_new_progress = False
    record_event(
        session, ref.job_id, "progress",
        {"done": tracker.done, "total": tracker.total, "progress": tracker.fraction},
        run_id=ref.run_id, holds_job_lock=True,
    )  # fmt: skip
    return True


def save_log(rt: Runtime, ref: AttemptRef, token: int, container_log: ContainerLog) -> str | None:
    """Store the attempt's whole log (as spooled while watching); return its key."""
    if container_log.cursor == 0:
        container_log.read_all()  # never watched (launch refused, cancelled): take what is left
    spool = container_log.spool
    if spool.tell() == 0:
        return None
    spool.seek(0)
    key = log_key(ref.job_id, ref.attempt, token)
    rt.storage.upload(key, spool, content_type="text/plain; charset=utf-8")
    return key


def finish_attempt(
    rt: Runtime,
    ref: AttemptRef,
    token: int,
    outcome: Outcome,
    container_log: ContainerLog,
    bound: structlog.BoundLogger,
) -> None:
    """Record the attempt's end (under the lease) and finish or retry the job."""
    settings = rt.settings
    try:
        log_blob = save_log(rt, ref, token, container_log)
    except (BackendError, StorageError) as exc:
        bound.warning("could not save the container log", error=str(exc))
        log_blob = None
    retry_delay: float | None = None
    try:
        with rt.sessions.begin() as session:
            job, run, db_now = lock_job_and_run(session, ref.job_id, ref.run_id)
            billed = _billed_seconds(outcome, run, db_now)
            cost = container_cost(
                PriceTable.from_settings(settings), billed, run.cpu, run.memory_gb,
                is_spot=run.is_spot,
            )  # fmt: skip
            # What the container printed after the last heartbeat comes first in the
            # job's history, then the end; a lost lease below rolls it all back.
            has_progress = record_progress(session, ref, container_log.tracker)
            transition_run(
                session, run, outcome.run_state, lease_token=token,
                data={"exit_code": outcome.exit_code, "failure_kind": outcome.failure_kind,
                      "cost_usd": str(cost), "billed_seconds": round(billed, 3)},
                exit_code=outcome.exit_code, failure_kind=outcome.failure_kind,
                billed_seconds=billed, cost_usd=cost, log_key=log_blob,
                peak_rss_mb=outcome.peak_rss_mb, cpu_seconds=outcome.cpu_seconds,
                holds_job_lock=True, **_container_times(outcome),
            )  # fmt: skip
            reserved = job.reserved_usd
            target, changes = _job_target(job, outcome)
            if has_progress:
                changes.setdefault("progress", container_log.tracker.fraction)
            changes.update(actual_cost_usd=job.actual_cost_usd + cost, reserved_usd=0)
            if target is JobState.RETRY_WAIT:
                retry_delay = outcome.retry_after_s or backoff_delay(
                    job.attempt, settings.retry_base_delay_s, settings.retry_max_delay_s
                )
                changes["next_attempt_at"] = db_now + timedelta(seconds=retry_delay)
            transition_job(
                session, job, target, reason=outcome.failure_kind or "succeeded", run_id=run.id,
                data={"attempt": run.attempt, "cost_usd": str(cost), "retry_in_s": retry_delay},
                **changes,
            )  # fmt: skip
            batch_id, max_runtime = job.batch_id, job.max_runtime_s
            waiting = []
            if batch_id is not None:
                settle_batch(session, batch_id, reserved, cost)
                # This attempt's slot (and any money it did not spend) frees at commit:
                # the batch's next jobs are chosen here and woken right after it.
                waiting = waiting_batch_jobs(session, batch_id)
    except ConcurrentChange:
        bound.warning("lease lost before finishing; the new manager finishes the run")
        return
    is_batch = batch_id is not None
    wake_jobs(rt.enqueuer, waiting)
    try:
        rt.backend.remove(ref.container_name)
    except BackendError as exc:
        # The run is finished either way; the reconciler deletes the leftover later.
        bound.warning("could not remove the container; the janitor will", error=str(exc))
    bound.info(
        "attempt finished",
        run_state=outcome.run_state.value, job_state=target.value, cost_usd=str(cost),
        failure_kind=outcome.failure_kind,
    )  # fmt: skip
    if retry_delay is not None:
        rt.enqueuer.enqueue(
            ref.job_id, is_batch=is_batch, max_runtime_s=max_runtime, delay_s=retry_delay
        )


def _container_times(outcome: Outcome) -> dict[str, datetime]:
    """Return the container's own start and exit times, where the backend reported them."""
    times = {"started_at": outcome.started_at, "finished_at": outcome.finished_at}
    return {name: value for name, value in times.items() if value is not None}


def _billed_seconds(outcome: Outcome, run: Run, db_now: datetime) -> float:
    """Return the billable time: from the launch request (image pull included) to the end."""
    start = run.launched_at or outcome.started_at or run.started_at
    end = outcome.finished_at or db_now
    if start is None or not outcome.is_launched:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def _job_target(job: Job, outcome: Outcome) -> tuple[JobState, dict[str, Any]]:
    """Choose the job's next state after an attempt, with the columns to change."""
    if outcome.run_state is RunState.SUCCEEDED:
        return JobState.SUCCEEDED, {
            "progress": 1.0,
            "output_key": output_key(job.id, OUTPUT_VIDEO),
            "poster_key": output_key(job.id, OUTPUT_POSTER),
        }
    if outcome.run_state is RunState.CANCELLED or job.cancel_requested:
        return JobState.CANCELLED, {}
    failure: dict[str, Any] = {
        "error_code": outcome.failure_kind,
        "error_message": outcome.message,
    }
    if outcome.failure_kind == "deadline":
        return JobState.TIMED_OUT, failure
    if outcome.failure_kind in _CAPACITY_KINDS:
        # The capacity's fault, not the job's: no attempt is used up. An eviction is
        # counted apart; after spot_max_evictions the supervisor falls back to Regular.
        evicted = outcome.failure_kind == "evicted"
        return JobState.RETRY_WAIT, {
            **failure,
            "evictions": job.evictions + int(evicted),
            "max_attempts": job.max_attempts + 1,
        }
    if outcome.is_retryable and job.attempt < job.max_attempts:
        return JobState.RETRY_WAIT, failure
    return JobState.FAILED, failure
