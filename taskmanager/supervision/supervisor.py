"""Supervise one job attempt: lease, launch or adopt, watch, and hand over to finishing.

One call of ``Supervisor.supervise(job_id)`` does an attempt's whole life. It is safe to
call any number of times, from any number of managers: the job row lock decides who
creates the attempt, the run lease decides who watches it, and the lease token fences
every write, so a manager that lost its lease changes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from taskmanager.backends.base import (
    BackendError,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
)
from taskmanager.models import Job, JobEvent, Run, Template, Upload
from taskmanager.states import JobState, RunState
from taskmanager.supervision.admission import admit
from taskmanager.supervision.containerlog import ContainerLog
from taskmanager.supervision.containerspec import FakeJobNotAllowed, build_spec, container_name
from taskmanager.supervision.finishing import AttemptRef, Outcome, finish_attempt, record_progress
from taskmanager.supervision.leases import Heartbeat, release_lease, renew_lease, take_lease
from taskmanager.supervision.progress import ProgressTracker
from taskmanager.supervision.runtime import Runtime
from taskmanager.transitions import (
    ConcurrentChange,
    lock_job_and_run,
    record_event,
    record_run_event,
    transition_job,
    transition_run,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# How long to wait before retrying the database after it failed to answer.
_DB_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# A lease written this recently (the run was created with it; never more than a quarter
# of its TTL) needs no renewal while its container has not even started: the first look
# after a launch saves a transaction.
_FRESH_LEASE_S = 1.0
# The job, locked, with what starting an attempt needs, in one round trip (template and
# upload are read before admission's lock is taken). Built once, like the transitions'.
_LOCK_JOB_FOR_ATTEMPT = (
    select(Job, Template, Upload)
    .join(Template, Template.id == Job.template_id)
    .join(Upload, Upload.id == Job.upload_id)
    .where(Job.id == bindparam("job_id"))
    .with_for_update(of=Job)
)


@dataclass(frozen=True)
class _Attempt:
    ref: AttemptRef
    # Set when this manager created the run and so already holds its lease.
    token: int | None = None
    # Set with token: the spec to launch, the run already marked launching.
    spec: ContainerSpec | None = None
    # Set with token: the job's deadline, so watching a fresh run needs no read first.
    max_runtime_s: int | None = None
    # Set with token: when (monotonic) the transaction that wrote the lease began.
    lease_written_at: float | None = None

    @property
    def run_id(self) -> uuid.UUID:
        return self.ref.run_id

    @property
    def name(self) -> str:
        return self.ref.container_name


class LeaseLost(Exception):
    """Another manager took the run over; stop touching it."""


class CancelledBeforeLaunch(Exception):
    """The job was cancelled before its container was started: start nothing."""


class Supervisor:
    """Runs ``supervise`` for one manager identity."""

    def __init__(self, runtime: Runtime, owner: str) -> None:
        self.rt = runtime
        self.owner = owner

    def supervise(self, job_id: uuid.UUID) -> None:
        """Drive the job's current attempt as far as this manager can."""
        bound = log.bind(job_id=str(job_id), manager=self.owner)
        attempt = self._with_db_retry(lambda: self._prepare(job_id))
        if attempt is None:
            return
        token = attempt.token or self._with_db_retry(lambda: self._take_lease(attempt.run_id))
        if token is None:
            bound.info("run supervised elsewhere", container=attempt.name)
            return
        bound = bound.bind(container=attempt.name, lease_token=token)
        container_log = ContainerLog(self.rt.backend, attempt.name)
        try:
            try:
                self._launch_or_adopt(attempt, token, bound)
            except BackendError as exc:
                outcome = Outcome.launch_failed(exc)
                finish_attempt(self.rt, attempt.ref, token, outcome, container_log, bound)
                return
            except CancelledBeforeLaunch:
                outcome = Outcome.not_launched()
                finish_attempt(self.rt, attempt.ref, token, outcome, container_log, bound)
                return
            watched = self._watch(attempt, token, container_log, bound)
            if watched is None:  # shutting down: the run was handed over
                return
            finish_attempt(self.rt, attempt.ref, token, watched, container_log, bound)
        except LeaseLost:
            bound.warning("lease lost; leaving the run to its new manager")
        finally:
            container_log.close()

    # --- phase 1: decide the attempt ---------------------------------------------------

    def _prepare(self, job_id: uuid.UUID) -> _Attempt | None:
        """Create the next attempt (if admitted) or find the current one, in one transaction."""
        began = time.monotonic()  # no later than the new run's lease (its heartbeat_at)
        with self.rt.sessions.begin() as session:
            found = session.execute(_LOCK_JOB_FOR_ATTEMPT, {"job_id": job_id}).one_or_none()
            if found is None:
                log.warning("no such job", job_id=str(job_id))
                return None
            job, template, upload = found
            state = job.job_state
            if state is JobState.RETRY_WAIT:
                if not self._is_due(session, job):
                    return None
                transition_job(session, job, JobState.QUEUED, reason="backoff over")
                state = JobState.QUEUED
            if state is JobState.QUEUED:
                return self._start_attempt(session, job, template, upload, began)
            if state in (JobState.STARTING, JobState.RUNNING):
                run = session.scalars(
                    select(Run).where(Run.job_id == job.id, Run.attempt == job.attempt)
                ).one_or_none()
                if run is None or run.run_state.is_terminal:
                    log.error("active job without a live run", job_id=str(job.id))
                    return None
                return _Attempt(_ref(run))
            return None  # terminal

    def _is_due(self, session: Session, job: Job) -> bool:
        """Tell whether a job in backoff may start its next attempt; re-arm it if not."""
        now = session.execute(select(_db_now())).scalar_one()
        if job.next_attempt_at is None or job.next_attempt_at <= now:
            return True
        wait = (job.next_attempt_at - now).total_seconds()
        self.rt.enqueuer.enqueue(
            job.id, is_batch=job.batch_id is not None, max_runtime_s=job.max_runtime_s, delay_s=wait
        )
        return False

    def _start_attempt(
        self, session: Session, job: Job, template: Template, upload: Upload, began: float
    ) -> _Attempt | None:
        if job.cancel_requested:
            transition_job(session, job, JobState.CANCELLED, reason="cancelled while queued")
            return None
        admission = admit(session, job, template, self.rt.settings)
        if not admission.is_admitted:
            self._note_refusal(session, job, admission.reason or "refused")
            if admission.retry_after_s is not None:
                self.rt.enqueuer.enqueue(
                    job.id,
                    is_batch=job.batch_id is not None,
                    max_runtime_s=job.max_runtime_s,
                    delay_s=admission.retry_after_s,
                )
            return None
        attempt = job.attempt + 1
        # Spot until it has been evicted too often, then Regular priority.
        is_spot = job.is_spot and job.evictions < self.rt.settings.spot_max_evictions
        run = Run(
            id=uuid.uuid4(),
            job_id=job.id,
            attempt=attempt,
            container_name=container_name(job.id, attempt),
            backend=self.rt.backend.name,
            cpu=job.cpu,
            memory_gb=job.memory_gb,
            is_spot=is_spot,
            # The creator holds the first lease: no second transaction to take it.
            lease_owner=self.owner,
            lease_token=1,
            heartbeat_at=func.now(),
        )
        try:
            spec: ContainerSpec | None = self._build_spec(job, run, 1, template, upload)
        except BackendError:
            spec = None  # e.g. fake jobs refused: the launch path records the refusal
        if spec is not None:
            # Born launching (one INSERT, not an INSERT and an UPDATE): it launches next.
            run.state, run.launched_at = RunState.LAUNCHING.value, _db_now()
        session.add(run)
        session.flush()
        transition_job(
            session,
            job,
            JobState.STARTING,
            reason="admitted",
            run_id=run.id,
            data={
                "attempt": attempt,
                "reserved_usd": str(admission.reserved_usd),
                "priority": "spot" if is_spot else "regular",
            },
            attempt=attempt,
            progress=0.0,
            reserved_usd=admission.reserved_usd,
            error_code=None,
            error_message=None,
        )
        if spec is not None:
            record_run_event(
                session, run, RunState.PENDING, RunState.LAUNCHING, holds_job_lock=True
            )
        return _Attempt(
            _ref(run), token=1, spec=spec, max_runtime_s=job.max_runtime_s, lease_written_at=began
        )

    def _note_refusal(self, session: Session, job: Job, reason: str) -> None:
        """Record why the job waits, once per reason (not on every re-check)."""
        last = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job.id, JobEvent.kind == "admission")
            .order_by(JobEvent.id.desc())
            .limit(1)
        ).first()
        if last is None or last.data.get("reason") != reason:
            record_event(session, job.id, "admission", {"admitted": False, "reason": reason})
            log.info("not admitted", job_id=str(job.id), reason=reason)

    def _take_lease(self, run_id: uuid.UUID) -> int | None:
        with self.rt.sessions.begin() as session:
            return take_lease(session, run_id, self.owner, self.rt.settings.lease_ttl_s)

    # --- phase 2: launch or adopt --------------------------------------------------------

    def _launch_or_adopt(self, attempt: _Attempt, token: int, bound: structlog.BoundLogger) -> None:
        if attempt.spec is not None:
            # This manager just created the attempt: no container can exist under its
            # fresh name, and the run is already marked launching.
            self._launch(attempt.spec, bound)
            return
        status = self.rt.backend.status(attempt.name)
        with self.rt.sessions.begin() as session:
            run = session.get_one(Run, attempt.run_id)
            if status.state is not ContainerState.NOT_FOUND:
                record_event(
                    session, run.job_id, "adopted", {"attempt": run.attempt, "lease_token": token},
                    run_id=run.id,
                )  # fmt: skip
                bound.info("container adopted", state=status.state.value)
                return
            if run.run_state is RunState.RUNNING:
                return  # the container vanished while unwatched; the watch loop marks it lost
            job = session.get_one(Job, run.job_id)
            if job.cancel_requested:
                raise CancelledBeforeLaunch
            spec = self._spec_for_launch(session, job, run, token)
        self._launch(spec, bound)

    def _spec_for_launch(self, session: Session, job: Job, run: Run, token: int) -> ContainerSpec:
        """Build the run's spec and mark the run launching (in the caller's transaction)."""
        template = session.get_one(Template, job.template_id)
        upload = session.get_one(Upload, job.upload_id)
        spec = self._build_spec(job, run, token, template, upload)
        if run.run_state is RunState.PENDING:
            transition_run(
                session, run, RunState.LAUNCHING, lease_token=token, launched_at=_db_now()
            )
        return spec

    def _build_spec(
        self, job: Job, run: Run, token: int, template: Template, upload: Upload
    ) -> ContainerSpec:
        try:
            return build_spec(job, run, token, template, upload, self.rt.storage, self.rt.settings)
        except FakeJobNotAllowed as exc:
            raise BackendError(str(exc), is_retryable=False) from exc

    def _launch(self, spec: ContainerSpec, bound: structlog.BoundLogger) -> None:
        try:
            self.rt.backend.launch(spec)
        except BackendError as exc:
            bound.warning("launch refused", error=str(exc), is_retryable=exc.is_retryable)
            raise
        bound.info("container launched", image=spec.image)

    # --- phase 3: watch ----------------------------------------------------------------

    def _watch(
        self,
        attempt: _Attempt,
        token: int,
        container_log: ContainerLog,
        bound: structlog.BoundLogger,
    ) -> Outcome | None:
        """Watch until the container ends or must be ended; None when handed over."""
        settings = self.rt.settings
        tracker = container_log.tracker
        started_at: datetime | None = None  # a run this manager just created has not started
        fresh_lease_until = 0.0
        if attempt.lease_written_at is not None:
            # Well inside the lease's TTL whatever it is configured to.
            fresh_for = min(_FRESH_LEASE_S, settings.lease_ttl_s / 4)
            fresh_lease_until = attempt.lease_written_at + fresh_for
        if attempt.max_runtime_s is not None:
            max_runtime = timedelta(seconds=attempt.max_runtime_s)
        else:  # adopted: it may have started long ago
            with self.rt.sessions() as session:
                run = session.get_one(Run, attempt.run_id)
                job = session.get_one(Job, run.job_id)
                max_runtime = timedelta(seconds=job.max_runtime_s)
                started_at = run.started_at
        while True:
            if self.rt.shutdown.is_set():
                self._hand_over(attempt, token, bound)
                return None
            status = self._look(attempt, container_log, bound)
            if status is not None and (
                status.is_finished or status.state is ContainerState.NOT_FOUND
            ):
                # No heartbeat first: finishing is the next write, under the same token,
                # and it stores the last progress too.
                self._look(attempt, container_log, bound)  # the last lines
                return Outcome.from_status(status, tracker)
            is_starting = (
                status is not None and status.state is ContainerState.RUNNING and started_at is None
            )
            is_pending = status is not None and status.state is ContainerState.PENDING
            if is_pending and time.monotonic() < fresh_lease_until:
                # Nothing to record, and no deadline runs yet; a cancel is seen next look.
                self.rt.backend.wait(attempt.name, settings.poll_interval_s)
                continue
            beat = self._heartbeat(attempt, token, tracker, status if is_starting else None)
            if is_starting and beat is not None and status is not None:
                started_at = status.started_at or beat.db_now
            reason = None
            if beat is not None and beat.is_cancel_requested:
                reason = "cancelled"
            elif (
                beat is not None
                and started_at is not None
                and beat.db_now - started_at > max_runtime
            ):
                reason = "deadline"
            elif tracker.seconds_since_change() > settings.stall_timeout_s:
                reason = "stalled"
            if reason is not None:
                outcome = self._stop(attempt, reason, tracker, bound)
                if outcome is not None:
                    return outcome
            wait = settings.poll_interval_s
            if beat is not None and started_at is not None:
                remaining = (started_at + max_runtime - beat.db_now).total_seconds()
                wait = min(wait, max(0.05, remaining + 0.05))
            self.rt.backend.wait(attempt.name, wait)

    def _look(
        self, attempt: _Attempt, container_log: ContainerLog, bound: structlog.BoundLogger
    ) -> ContainerStatus | None:
        """Read the container's status and new log lines; None if the backend is unreachable."""
        try:
            status = self.rt.backend.status(attempt.name)
            container_log.read_more()
            return status
        except BackendError as exc:
            # A throttled or failing control plane is no reason to give up on a container
            # that may be running fine: look again at the next step.
            bound.warning("backend unreachable while watching", error=str(exc))
            return None

    def _heartbeat(
        self,
        attempt: _Attempt,
        token: int,
        tracker: ProgressTracker,
        started: ContainerStatus | None = None,
    ) -> Heartbeat | None:
        """Renew the lease, store new progress and, given ``started``, record the start.

        One transaction whatever it carries, on every step but the one that finds the
        container ended (finishing writes next) and those before a fresh run's container
        starts (``_FRESH_LEASE_S``). None if the database is unreachable.
        """
        try:
            with self.rt.sessions.begin() as session:
                beat = renew_lease(session, attempt.run_id, token)
                if beat is None:
                    raise LeaseLost
                if started is not None:
                    self._mark_running(session, attempt, token, started)
                if tracker.has_new_progress:
                    job_id = attempt.ref.job_id
                    # The UPDATE takes the job's row lock the event needs.
                    session.execute(
                        update(Job).where(Job.id == job_id).values(progress=tracker.fraction)
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

    def _mark_running(
        self, session: Session, attempt: _Attempt, token: int, status: ContainerStatus
    ) -> None:
        """Record that the container runs: run → running, job → running.

        The job's row is locked first, so the run's events need no lock of their own.
        """
        job, run, _ = lock_job_and_run(session, attempt.ref.job_id, attempt.run_id)
        if run.run_state in (RunState.PENDING, RunState.LAUNCHING):
            if run.run_state is RunState.PENDING:
                transition_run(
                    session, run, RunState.LAUNCHING, lease_token=token, holds_job_lock=True
                )
            # The container's own start time, where the backend knows it.
            when: dict[str, Any] = {"started_at": status.started_at} if status.started_at else {}
            transition_run(
                session, run, RunState.RUNNING, lease_token=token, holds_job_lock=True, **when
            )
        if job.job_state is JobState.STARTING:
            transition_job(session, job, JobState.RUNNING, run_id=run.id)

    def _stop(
        self, attempt: _Attempt, reason: str, tracker: ProgressTracker, bound: structlog.BoundLogger
    ) -> Outcome | None:
        """Stop the container; None if the backend refused (the next step tries again)."""
        bound.info("stopping container", reason=reason)
        try:
            self.rt.backend.stop(attempt.name, self.rt.settings.stop_grace_s)
            status = self.rt.backend.status(attempt.name)
        except BackendError as exc:
            bound.warning("stop failed; retrying at the next step", error=str(exc))
            return None
        return Outcome.stopped(reason, status, tracker)

    def _hand_over(self, attempt: _Attempt, token: int, bound: structlog.BoundLogger) -> None:
        """Release the lease and wake another manager; the container keeps running."""
        with self.rt.sessions.begin() as session:
            if release_lease(session, attempt.run_id, token):
                run = session.get_one(Run, attempt.run_id)
                job = session.get_one(Job, run.job_id)
                record_event(session, job.id, "handed_over", {"manager": self.owner}, run_id=run.id)
                self.rt.enqueuer.enqueue(
                    job.id,
                    is_batch=job.batch_id is not None,
                    max_runtime_s=job.max_runtime_s,
                    wake_key=f"handover:{token}",
                )
        bound.info("run handed over for shutdown")

    def _with_db_retry(self, step: Callable[[], T]) -> T | None:
        """Run a database step, retrying with backoff while the database is unreachable."""
        for delay in (*_DB_RETRY_S, None):
            try:
                return step()
            except ConcurrentChange:
                return None
            except OperationalError:
                if delay is None:
                    raise
                log.warning("database unreachable; retrying", retry_in_s=delay)
                self.rt.shutdown.wait(delay)
        return None


def _ref(run: Run) -> AttemptRef:
    return AttemptRef(run.id, run.job_id, run.attempt, run.container_name)


def _db_now() -> ColumnElement[datetime]:
    return func.now()
