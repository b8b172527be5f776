"""Watch a launched attempt until its container ends or must be ended.

Every step looks at the container (status and new log lines), then renews the lease in
one transaction that also stores new progress and, the first time, the start; it stops
the container on cancel, at the deadline, or when progress stalls. A failed look is
"try again at the next step", never a verdict on the container.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from taskmanager.backends.base import BackendError, ContainerState, ContainerStatus
from taskmanager.models import Job, Run
from taskmanager.states import JobState, RunState, StopReason
from taskmanager.supervision.attempt import LeasedAttempt, PreparedAttempt
from taskmanager.supervision.finishing import record_progress
from taskmanager.supervision.leases import Heartbeat, release_lease, renew_lease
from taskmanager.supervision.outcome import EXIT_DEADLINE, Outcome
from taskmanager.supervision.progress import ProgressTracker
from taskmanager.transitions import (
    ConcurrentChange,
    lock_job_and_run,
    record_event,
    transition_job,
    transition_run,
)

log = structlog.get_logger(__name__)

# A lease written this recently (the run was created with it; never more than a quarter
# of its TTL) needs no renewal while its container has not even started: the first look
# after a launch saves a transaction.
_FRESH_LEASE_S = 1.0
# A container action (launch, stop) needs a lease renewed within this fraction of its
# TTL: a manager paused past its TTL must not act on a container another may now hold.
_SAFE_LEASE_FRACTION = 0.25


class LeaseLost(Exception):
    """Another manager took the run over; stop touching it."""


class LeaseUnproven(LeaseLost):
    """The lease could not be renewed (database unreachable): act on no container."""


def has_fresh_lease(attempt: LeasedAttempt) -> bool:
    """Renew the lease unless it was renewed just now; tell whether it is proven ours.

    Raises ``LeaseLost`` if another manager holds it; False if the database did not
    answer (then nothing may be done to the container this step).
    """
    runtime = attempt.runtime
    safe_for = runtime.settings.lease_ttl_s * _SAFE_LEASE_FRACTION
    if runtime.clock() - attempt.lease_renewed_at <= safe_for:
        return True
    return heartbeat(attempt, None) is not None


@dataclass
class _Deadline:
    """The attempt's deadline, on its billed window, and whether its container runs yet.

    The window starts at the create request (``launched_at``), as the cloud bills it,
    so provisioning, the stop's grace and any gap in supervision all count against
    ``max_runtime_s``; the container is told the same deadline and ends itself there.
    """

    max_runtime: timedelta
    launched_at: datetime | None
    started_at: datetime | None = None

    @property
    def due_at(self) -> datetime | None:
        """Return when the attempt must end (None: not launched yet)."""
        return None if self.launched_at is None else self.launched_at + self.max_runtime

    def remaining_s(self, db_now: datetime) -> float | None:
        """Return the seconds left before the deadline, or None before the launch."""
        due_at = self.due_at
        return None if due_at is None else (due_at - db_now).total_seconds()

    def has_passed(self, when: datetime) -> bool:
        """Tell whether ``when`` is at or past the deadline."""
        due_at = self.due_at
        return due_at is not None and when >= due_at


@contextmanager
def lease_kept_alive(attempt: LeasedAttempt) -> Iterator[None]:
    """Keep renewing the lease from a thread while a long blocking call runs.

    An ACI launch can wait 20 s for a rate slot plus the SDK's retries, and a stop up to
    ``stop_grace_s`` + 30 s: longer than a short TTL, after which another manager would
    adopt a run this one is still acting on. Raises ``LeaseLost`` after the call if a
    renewal found the lease taken; a silent database leaves it to the TTL, as ever.
    """
    runtime = attempt.runtime
    is_done, is_lost = threading.Event(), threading.Event()

    def keep() -> None:
        while not is_done.wait(runtime.settings.lease_ttl_s / 3):
            began = runtime.clock()
            try:
                with runtime.sessions.begin() as session:
                    if renew_lease(session, attempt.ref.run_id, attempt.token) is None:
                        is_lost.set()
                        return
            except DBAPIError:
                continue
            attempt.lease_renewed_at = began

    keeper = threading.Thread(target=keep, name="lease-keeper", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        is_done.set()
        keeper.join()
    if is_lost.is_set():
        raise LeaseLost


def watch_attempt(attempt: LeasedAttempt, prepared: PreparedAttempt) -> Outcome | None:
    """Watch until the container ends or must be ended; None when handed over."""
    runtime = attempt.runtime
    settings = runtime.settings
    tracker = attempt.container_log.tracker
    fresh_lease_until = 0.0
    if prepared.lease_written_at is not None:
        # Well inside the lease's TTL whatever it is configured to.
        fresh_for = min(_FRESH_LEASE_S, settings.lease_ttl_s / 4)
        fresh_lease_until = prepared.lease_written_at + fresh_for
    deadline = _deadline_of(attempt, prepared)
    while True:
        if runtime.shutdown.is_set():
            hand_over(attempt)
            return None
        status = _look(attempt)
        if status is not None and (status.is_finished or status.state is ContainerState.NOT_FOUND):
            # No heartbeat first: finishing is the next write, under the same token,
            # and it stores the last progress too.
            _look(attempt)  # the last lines
            return _ended(status, tracker, deadline)
        is_starting = (
            status is not None
            and status.state is ContainerState.RUNNING
            and deadline.started_at is None
        )
        is_pending = status is not None and status.state is ContainerState.PENDING
        if is_pending and runtime.clock() < fresh_lease_until:
            # Nothing to record, and no deadline runs yet; a cancel is seen next look.
            runtime.backend.wait(attempt.name, settings.poll_interval_s)
            continue
        beat = heartbeat(attempt, status if is_starting else None)
        if is_starting and beat is not None and status is not None:
            deadline.started_at = status.started_at or beat.db_now
            # Progress can only stall once the container runs: an image pull or a slow
            # provisioning is bounded by the backend's own start timeout instead.
            tracker.restart_stall_clock()
        reason = _stop_reason(attempt, beat, deadline)
        if reason is not None:
            outcome = _stop(attempt, reason)
            if outcome is not None:
                return outcome
        wait = settings.poll_interval_s
        remaining = deadline.remaining_s(beat.db_now) if beat is not None else None
        if remaining is not None:
            wait = min(wait, max(0.05, remaining + 0.05))
        runtime.backend.wait(attempt.name, wait)


def _deadline_of(attempt: LeasedAttempt, prepared: PreparedAttempt) -> _Deadline:
    """Return the run's deadline: known to its creator, read for an adopted run."""
    if prepared.max_runtime_s is not None and prepared.launched_at is not None:
        return _Deadline(timedelta(seconds=prepared.max_runtime_s), prepared.launched_at)
    # Adopted (or relaunched): it may have been launched, and started, long ago.
    with attempt.runtime.sessions() as session:
        run = session.get_one(Run, attempt.ref.run_id)
        job = session.get_one(Job, run.job_id)
        return _Deadline(timedelta(seconds=job.max_runtime_s), run.launched_at, run.started_at)


def _ended(status: ContainerStatus, tracker: ProgressTracker, deadline: _Deadline) -> Outcome:
    """Classify a container that ended on its own: past its deadline, it timed out.

    The image ends itself at its deadline (exit 124, or killed a second later if it
    ignores SIGTERM) when no manager stopped it in time: that is the deadline's doing.
    """
    outcome = Outcome.from_status(status, tracker)
    ended_at = status.finished_at
    is_late = ended_at is not None and deadline.has_passed(ended_at)
    if outcome.run_state is RunState.SUCCEEDED:
        return outcome
    if not (is_late or status.exit_code == EXIT_DEADLINE):
        return outcome
    return Outcome.stopped(StopReason.DEADLINE, status, tracker)


def _stop_reason(
    attempt: LeasedAttempt, beat: Heartbeat | None, deadline: _Deadline
) -> StopReason | None:
    """Return why the container must be stopped now, if it must."""
    if beat is not None and beat.is_cancel_requested:
        return StopReason.CANCELLED
    remaining = deadline.remaining_s(beat.db_now) if beat is not None else None
    if remaining is not None and remaining < 0:
        return StopReason.DEADLINE
    stall_timeout_s = attempt.runtime.settings.stall_timeout_s
    is_running = deadline.started_at is not None
    if is_running and attempt.container_log.tracker.seconds_since_change() > stall_timeout_s:
        return StopReason.STALLED
    return None


def _look(attempt: LeasedAttempt) -> ContainerStatus | None:
    """Read the container's status and new log lines; None if the backend is unreachable."""
    try:
        status = attempt.runtime.backend.status(attempt.name)
        attempt.container_log.read_more()
        return status
    except BackendError as exc:
        # A throttled or failing control plane is no reason to give up on a container
        # that may be running fine: look again at the next step.
        attempt.log.warning("backend unreachable while watching", error=str(exc))
        return None


def heartbeat(attempt: LeasedAttempt, started: ContainerStatus | None) -> Heartbeat | None:
    """Renew the lease, store new progress and, given ``started``, record the start.

    One transaction whatever it carries, on every step but the one that finds the
    container ended (finishing writes next) and those before a fresh run's container
    starts (``_FRESH_LEASE_S``). None if the database is unreachable.
    """
    tracker = attempt.container_log.tracker
    began = attempt.runtime.clock()
    try:
        with attempt.runtime.sessions.begin() as session:
            beat = renew_lease(session, attempt.ref.run_id, attempt.token)
            if beat is None:
                raise LeaseLost
            attempt.lease_renewed_at = began
            if started is not None:
                _mark_running(session, attempt, started)
            if tracker.has_new_progress:
                # The UPDATE takes the job's row lock the event needs.
                session.execute(
                    update(Job)
                    .where(Job.id == attempt.ref.job_id)
                    .values(progress=tracker.fraction)
                )
                record_progress(session, attempt.ref, tracker)
            return beat
    except ConcurrentChange as exc:
        raise LeaseLost from exc
    except DBAPIError as exc:
        # Ride out a database restart: the container keeps running, and the lease
        # stays ours unless the outage outlasts its TTL (then the token check fences us).
        log.warning("database unreachable during watch", error=type(exc).__name__)
        return None


def _mark_running(session: Session, attempt: LeasedAttempt, status: ContainerStatus) -> None:
    """Record that the container runs: run → running, job → running.

    The job's row is locked first, so the run's events need no lock of their own.
    """
    job, run, _ = lock_job_and_run(session, attempt.ref.job_id, attempt.ref.run_id)
    token = attempt.token
    if run.run_state in (RunState.PENDING, RunState.LAUNCHING):
        if run.run_state is RunState.PENDING:
            transition_run(session, run, RunState.LAUNCHING, lease_token=token, holds_job_lock=True)
        # The container's own start time, where the backend knows it.
        when: dict[str, Any] = {"started_at": status.started_at} if status.started_at else {}
        transition_run(
            session, run, RunState.RUNNING, lease_token=token, holds_job_lock=True, **when
        )
    if job.job_state is JobState.STARTING:
        transition_job(session, job, JobState.RUNNING, run_id=run.id)


def _stop(attempt: LeasedAttempt, reason: StopReason) -> Outcome | None:
    """Stop the container; None if not now (the next step tries again).

    Not now: the lease is not proven fresh, or the backend refused. A container found
    to have exited 0 meanwhile has succeeded, whatever the reason to stop it was.
    """
    if not has_fresh_lease(attempt):
        attempt.log.warning("lease not renewed; not stopping the container this step")
        return None
    backend = attempt.runtime.backend
    tracker = attempt.container_log.tracker
    attempt.log.info("stopping container", reason=reason.value)
    try:
        with lease_kept_alive(attempt):
            backend.stop(attempt.name, attempt.runtime.settings.stop_grace_s)
            status = backend.status(attempt.name)
    except BackendError as exc:
        attempt.log.warning("stop failed; retrying at the next step", error=str(exc))
        return None
    if status.is_finished and status.exit_code == 0:
        return Outcome.from_status(status, tracker)
    return Outcome.stopped(reason, status, tracker)


def hand_over(attempt: LeasedAttempt) -> None:
    """Release the lease and wake another manager; the container keeps running."""
    runtime = attempt.runtime
    with runtime.sessions.begin() as session:
        if release_lease(session, attempt.ref.run_id, attempt.token):
            run = session.get_one(Run, attempt.ref.run_id)
            job = session.get_one(Job, run.job_id)
            data = {"manager": attempt.owner}
            record_event(session, job.id, "handed_over", data, run_id=run.id)
            runtime.enqueuer.enqueue(
                job.id,
                is_batch=job.batch_id is not None,
                max_runtime_s=job.max_runtime_s,
                wake_key=f"handover:{attempt.token}",
            )
    attempt.log.info("run handed over for shutdown")
