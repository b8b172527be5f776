"""End an attempt: classify how it ended, bill it, save its log, retry or finish the job."""

from __future__ import annotations

import random
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select

from taskmanager.admission import settle_batch
from taskmanager.backends.base import BackendError, ContainerState, ContainerStatus
from taskmanager.containerspec import OUTPUT_POSTER, OUTPUT_VIDEO
from taskmanager.cost import PriceTable, container_cost
from taskmanager.models import Job, Run
from taskmanager.progress import ProgressTracker
from taskmanager.runtime import Runtime
from taskmanager.states import JobState, RunState
from taskmanager.storage.keys import log_key, output_key
from taskmanager.transitions import ConcurrentChange, transition_job, transition_run

log = structlog.get_logger(__name__)

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
        """Classify a container that ended on its own (or vanished)."""
        message = tracker.error_message() or _tail_message(tracker)
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
        kind = "killed" if status.detail == "oom_or_killed" else "crash"
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
        return cls(RunState.CANCELLED, "cancelled", False, message="cancelled before launch")

    @classmethod
    def launch_failed(cls, error: BackendError) -> Outcome:
        """Classify a launch the backend refused."""
        return cls(RunState.FAILED, "launch", error.is_retryable, message=str(error))


def _tail_message(tracker: ProgressTracker) -> str | None:
    return tracker.tail[-1] if tracker.tail else None


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Return the wait before the next attempt: exponential, capped, with jitter.

    "Equal jitter": half the exponential delay is kept, half is random, so retries of
    many jobs that failed together spread out but none retries at once.
    """
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return float(delay / 2 + random.uniform(0, delay / 2))  # noqa: S311 - not for security


def save_log(rt: Runtime, run: Run) -> str | None:
    """Copy the container's whole log into storage; return its key (None if nothing)."""
    key = log_key(run.job_id, run.attempt)
    with tempfile.TemporaryFile() as spool:
        cursor = 0
        while True:
            text, next_cursor = rt.backend.logs_since(run.container_name, cursor)
            if next_cursor == cursor:
                break
            spool.write(text.encode())
            cursor = next_cursor
        if cursor == 0:
            return None
        spool.seek(0)
        rt.storage.upload(key, spool, content_type="text/plain; charset=utf-8")
    return key


def finish_attempt(
    rt: Runtime, run_id: uuid.UUID, token: int, outcome: Outcome, bound: structlog.BoundLogger
) -> None:
    """Record the attempt's end (under the lease) and finish or retry the job."""
    settings = rt.settings
    with rt.sessions() as session:
        run = session.get_one(Run, run_id)
    log_blob = save_log(rt, run)
    retry_delay: float | None = None
    with rt.sessions.begin() as session:
        job = session.get_one(Job, run.job_id, with_for_update=True)
        run = session.get_one(Run, run_id)
        db_now = session.execute(select(func.now())).scalar_one()
        billed = _billed_seconds(outcome, run, db_now)
        cost = container_cost(
            PriceTable.from_settings(settings), billed, run.cpu, run.memory_gb, is_spot=run.is_spot
        )
        try:
            transition_run(
                session, run, outcome.run_state, lease_token=token,
                data={"exit_code": outcome.exit_code, "failure_kind": outcome.failure_kind,
                      "cost_usd": str(cost), "billed_seconds": round(billed, 3)},
                exit_code=outcome.exit_code, failure_kind=outcome.failure_kind,
                billed_seconds=billed, cost_usd=cost, log_key=log_blob,
                peak_rss_mb=outcome.peak_rss_mb, cpu_seconds=outcome.cpu_seconds,
                **_container_times(outcome),
            )  # fmt: skip
        except ConcurrentChange:
            bound.warning("lease lost before finishing; the new manager finishes the run")
            return
        job.actual_cost_usd += cost
        settle_batch(session, job, cost)
        target, changes = _job_target(job, outcome)
        if target is JobState.RETRY_WAIT:
            retry_delay = backoff_delay(
                job.attempt, settings.retry_base_delay_s, settings.retry_max_delay_s
            )
            changes["next_attempt_at"] = db_now + timedelta(seconds=retry_delay)
        transition_job(
            session, job, target, reason=outcome.failure_kind or "succeeded", run_id=run.id,
            data={"attempt": run.attempt, "cost_usd": str(cost), "retry_in_s": retry_delay},
            **changes,
        )  # fmt: skip
        is_batch, max_runtime = job.batch_id is not None, job.max_runtime_s
    rt.backend.remove(run.container_name)
    bound.info(
        "attempt finished",
        run_state=outcome.run_state.value, job_state=target.value, cost_usd=str(cost),
        failure_kind=outcome.failure_kind,
    )  # fmt: skip
    if retry_delay is not None:
        rt.enqueuer.enqueue(
            run.job_id, is_batch=is_batch, max_runtime_s=max_runtime, delay_s=retry_delay
        )


def _container_times(outcome: Outcome) -> dict[str, datetime]:
    """Return the container's own start and exit times, where the backend reported them."""
    times = {"started_at": outcome.started_at, "finished_at": outcome.finished_at}
    return {name: value for name, value in times.items() if value is not None}


def _billed_seconds(outcome: Outcome, run: Run, db_now: datetime) -> float:
    """Return the billable time: container start to end, or launch to now if unknown."""
    start = outcome.started_at or run.started_at or run.launched_at
    end = outcome.finished_at or db_now
    if start is None:
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
    if outcome.is_retryable and job.attempt < job.max_attempts:
        return JobState.RETRY_WAIT, failure
    return JobState.FAILED, failure
