"""End an attempt: bill it, save its log, then retry or finish the job, under the lease."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskmanager.backends.base import BackendError
from taskmanager.batches.ledger import settle_batch, waiting_batch_jobs, wake_jobs
from taskmanager.cost import PriceTable, container_cost
from taskmanager.models import Job, Run
from taskmanager.settings import Settings
from taskmanager.states import FailureKind, JobState, RunState
from taskmanager.storage import StorageError
from taskmanager.storage.keys import log_key, output_key
from taskmanager.supervision.attempt import AttemptRef, LeasedAttempt
from taskmanager.supervision.containerspec import OUTPUT_POSTER, OUTPUT_VIDEO
from taskmanager.supervision.fairness import (
    fairest_waiting_jobs,
    free_slots_if_scarce,
    wake_fairest,
)
from taskmanager.supervision.outcome import CAPACITY_KINDS, Outcome, backoff_delay
from taskmanager.supervision.progress import ProgressTracker
from taskmanager.transitions import (
    ConcurrentChange,
    lock_job_and_run,
    record_event,
    transition_job,
    transition_run,
)


def record_progress(session: Session, ref: AttemptRef, tracker: ProgressTracker) -> bool:
    """Record the progress reported since the last call as an event; False if none.

    The caller's transaction holds the job's row lock and stores ``tracker.fraction``.
    """
    if not tracker.has_new_progress:
        return False
    tracker.has_new_progress = False
    record_event(
        session,
        ref.job_id,
        "progress",
        {"done": tracker.done, "total": tracker.total, "progress": tracker.fraction},
        run_id=ref.run_id,
        holds_job_lock=True,
    )
    return True


def save_log(attempt: LeasedAttempt) -> str | None:
    """Store the attempt's whole log (as spooled while watching); return its key."""
    container_log = attempt.container_log
    if container_log.cursor == 0:
        container_log.read_all()  # never watched (launch refused, cancelled): take what is left
    spool = container_log.spool
    if spool.tell() == 0:
        return None
    spool.seek(0)
    key = log_key(attempt.ref.job_id, attempt.ref.attempt, attempt.token)
    attempt.runtime.storage.upload(key, spool, content_type="text/plain; charset=utf-8")
    return key


def finish_attempt(attempt: LeasedAttempt, outcome: Outcome) -> None:
    """Record the attempt's end (under the lease) and finish or retry the job."""
    runtime, ref, tracker = attempt.runtime, attempt.ref, attempt.container_log.tracker
    settings = runtime.settings
    try:
        log_blob = save_log(attempt)
    except (BackendError, StorageError) as exc:
        attempt.log.warning("could not save the container log", error=str(exc))
        log_blob = None
    retry_delay: float | None = None
    try:
        with runtime.sessions.begin() as session:
            job, run, db_now = lock_job_and_run(session, ref.job_id, ref.run_id)
            billed = _billed_seconds(outcome, run, db_now)
            cost = container_cost(
                PriceTable.from_settings(settings),
                billed,
                run.cpu,
                run.memory_gb,
                is_spot=run.is_spot,
            )
            # What the container printed after the last heartbeat comes first in the
            # job's history, then the end; a lost lease below rolls it all back.
            has_progress = record_progress(session, ref, tracker)
            transition_run(
                session,
                run,
                outcome.run_state,
                lease_token=attempt.token,
                data={
                    "exit_code": outcome.exit_code,
                    "failure_kind": outcome.failure_kind,
                    "cost_usd": str(cost),
                    "billed_seconds": round(billed, 3),
                },
                exit_code=outcome.exit_code,
                failure_kind=outcome.failure_kind,
                billed_seconds=billed,
                cost_usd=cost,
                log_key=log_blob,
                peak_rss_mb=outcome.peak_rss_mb,
                cpu_seconds=outcome.cpu_seconds,
                holds_job_lock=True,
                **_container_times(outcome),
            )
            reserved = job.reserved_usd
            target, changes = _job_target(job, outcome)
            if target is JobState.RETRY_WAIT and outcome.failure_kind is FailureKind.CAPACITY:
                target, changes = _bound_capacity_retries(session, job, db_now, changes, settings)
            if has_progress:
                changes.setdefault("progress", tracker.fraction)
            changes.update(actual_cost_usd=job.actual_cost_usd + cost, reserved_usd=0)
            if target is JobState.RETRY_WAIT:
                retry_delay = outcome.retry_after_s or backoff_delay(
                    job.attempt, settings.retry_base_delay_s, settings.retry_max_delay_s
                )
                changes["next_attempt_at"] = db_now + timedelta(seconds=retry_delay)
            transition_job(
                session,
                job,
                target,
                reason=outcome.failure_kind or "succeeded",
                run_id=run.id,
                data={"attempt": run.attempt, "cost_usd": str(cost), "retry_in_s": retry_delay},
                **changes,
            )
            batch_id, max_runtime = job.batch_id, job.max_runtime_s
            # The freed container slot goes to the fairest waiting job at once, not at
            # that job's next poll (chosen before the batch row is locked below).
            fairest = []
            if settings.fair_admission and free_slots_if_scarce(session, settings) is not None:
                fairest = fairest_waiting_jobs(session, 1)
            waiting = []
            if batch_id is not None:
                settle_batch(session, batch_id, reserved, cost)
                # This attempt's slot (and any money it did not spend) frees at commit:
                # the batch's next jobs are chosen here and woken right after it.
                waiting = waiting_batch_jobs(session, batch_id)
    except ConcurrentChange:
        attempt.log.warning("lease lost before finishing; the new manager finishes the run")
        return
    wake_jobs(runtime.enqueuer, waiting)
    wake_fairest(runtime.enqueuer, fairest)
    try:
        runtime.backend.remove(ref.container_name)
    except BackendError as exc:
        # The run is finished either way; the reconciler deletes the leftover later.
        attempt.log.warning("could not remove the container; the janitor will", error=str(exc))
    attempt.log.info(
        "attempt finished",
        run_state=outcome.run_state.value,
        job_state=target.value,
        cost_usd=str(cost),
        failure_kind=outcome.failure_kind,
    )
    if retry_delay is not None:
        runtime.enqueuer.enqueue(
            ref.job_id,
            is_batch=batch_id is not None,
            max_runtime_s=max_runtime,
            delay_s=retry_delay,
        )


def _container_times(outcome: Outcome) -> dict[str, datetime]:
    """Return the container's own start and exit times, where the backend reported them."""
    times = {"started_at": outcome.started_at, "finished_at": outcome.finished_at}
    return {name: value for name, value in times.items() if value is not None}


def _billed_seconds(outcome: Outcome, run: Run, db_now: datetime) -> float:
    """Return the billable time: from the launch request (image pull included) to the end.

    An attempt whose launch was refused (or that was cancelled first) ran nothing, unless
    the run is known to have started: a run that ran is never billed as zero.
    """
    start = run.launched_at or outcome.started_at or run.started_at
    end = outcome.finished_at or db_now
    has_run = outcome.is_launched or run.started_at is not None
    if start is None or not has_run:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def _bound_capacity_retries(
    session: Session, job: Job, db_now: datetime, changes: dict[str, Any], settings: Settings
) -> tuple[JobState, dict[str, Any]]:
    """Give up on a job the backend keeps refusing, by count and by time.

    A refusal for now (quota, capacity, 429, 5xx) costs no attempt, so without a bound a
    persistent one would retry forever; the job's error says which bound it hit.
    """
    refusals = session.scalar(
        select(func.count())
        .select_from(Run)
        .where(Run.job_id == job.id, Run.failure_kind == FailureKind.CAPACITY)
    )
    waited_s = (db_now - job.created_at).total_seconds()
    if (refusals or 0) <= settings.max_capacity_retries and (
        waited_s <= settings.capacity_retry_window_s
    ):
        return JobState.RETRY_WAIT, changes
    message = (
        f"the backend refused to launch the container {refusals} times over "
        f"{waited_s / 60:.0f} min (limits: max_capacity_retries "
        f"{settings.max_capacity_retries}, capacity_retry_window_s "
        f"{settings.capacity_retry_window_s:g}); last refusal: {changes.get('error_message')}"
    )
    return JobState.FAILED, {"error_code": FailureKind.CAPACITY, "error_message": message}


def _job_target(job: Job, outcome: Outcome) -> tuple[JobState, dict[str, Any]]:
    """Choose the job's next state after an attempt, with the columns to change."""
    if outcome.run_state is RunState.SUCCEEDED:
        return JobState.SUCCEEDED, {
            "progress": 1.0,
            "output_key": output_key(job.id, job.attempt, OUTPUT_VIDEO),
            "poster_key": output_key(job.id, job.attempt, OUTPUT_POSTER),
        }
    if outcome.run_state is RunState.CANCELLED or job.cancel_requested:
        return JobState.CANCELLED, {}
    failure: dict[str, Any] = {
        "error_code": outcome.failure_kind,
        "error_message": outcome.message,
    }
    if outcome.failure_kind is FailureKind.DEADLINE:
        return JobState.TIMED_OUT, failure
    if outcome.failure_kind in CAPACITY_KINDS:
        # The capacity's fault, not the job's: no attempt is used up. An eviction is
        # counted apart; after spot_max_evictions the supervisor falls back to Regular.
        evicted = outcome.failure_kind is FailureKind.EVICTED
        return JobState.RETRY_WAIT, {
            **failure,
            "evictions": job.evictions + int(evicted),
            "max_attempts": job.max_attempts + 1,
        }
    if outcome.is_retryable and job.attempt < job.max_attempts:
        return JobState.RETRY_WAIT, failure
    return JobState.FAILED, failure
