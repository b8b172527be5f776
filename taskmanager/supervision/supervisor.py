"""Supervise one job attempt: lease, launch or adopt, watch, and hand over to finishing.

One call of ``Supervisor.supervise(job_id)`` does an attempt's whole life. It is safe to
call any number of times, from any number of managers: the job row lock decides who
creates the attempt, the run lease decides who watches it, and the lease token fences
every write, so a manager that lost its lease changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import structlog
from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taskmanager.backends.base import BackendError, ContainerSpec, ContainerState, ContainerStatus
from taskmanager.models import Job, JobEvent, Run, Template, Upload
from taskmanager.states import LIVE_RUN_STATES, JobState, RunState
from taskmanager.supervision.admission import admit
from taskmanager.supervision.attempt import AttemptRef, LeasedAttempt, PreparedAttempt
from taskmanager.supervision.containerlog import ContainerLog
from taskmanager.supervision.containerspec import FakeJobNotAllowed, build_spec, container_name
from taskmanager.supervision.finishing import finish_attempt
from taskmanager.supervision.leases import take_lease
from taskmanager.supervision.outcome import Outcome
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.watch import (
    LeaseLost,
    LeaseUnproven,
    hand_over,
    has_fresh_lease,
    heartbeat,
    lease_kept_alive,
    watch_attempt,
)
from taskmanager.transitions import (
    ConcurrentChange,
    record_event,
    record_run_event,
    transition_job,
    transition_run,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# How long to wait before retrying the database after it failed to answer.
_DB_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# The job, locked, with what starting an attempt needs, in one round trip (template and
# upload are read before admission's lock is taken). Built once, like the transitions'.
_LOCK_JOB_FOR_ATTEMPT = (
    select(Job, Template, Upload, func.now())
    .join(Template, Template.id == Job.template_id)
    .join(Upload, Upload.id == Job.upload_id)
    .where(Job.id == bindparam("job_id"))
    .with_for_update(of=Job)
)


class CancelledBeforeLaunch(Exception):
    """The job was cancelled before its container was started: start nothing."""


class Supervisor:
    """Runs ``supervise`` for one manager identity."""

    def __init__(self, runtime: Runtime, owner: str) -> None:
        self.runtime = runtime
        self.owner = owner

    def supervise(self, job_id: uuid.UUID) -> None:
        """Drive the job's current attempt as far as this manager can."""
        prepared = self._with_db_retry(lambda: self._prepare(job_id))
        if prepared is not None:
            self.drive(prepared)

    def drive(self, prepared: PreparedAttempt) -> None:
        """Hold (or take) the attempt's lease, then launch or adopt, watch and finish it."""
        ref = prepared.ref
        job_log = log.bind(job_id=str(ref.job_id), manager=self.owner)
        renewed_at = prepared.lease_written_at if prepared.token else self.runtime.clock()
        token = prepared.token or self._with_db_retry(lambda: self._take_lease(ref.run_id))
        if token is None:
            job_log.info("run supervised elsewhere", container=ref.container_name)
            return
        attempt = LeasedAttempt(
            runtime=self.runtime,
            owner=self.owner,
            ref=ref,
            token=token,
            container_log=ContainerLog(
                self.runtime.backend, ref.container_name, self.runtime.clock
            ),
            log=job_log.bind(container=ref.container_name, lease_token=token),
            lease_renewed_at=renewed_at or 0.0,
        )
        try:
            self._run_attempt(attempt, prepared)
        except LeaseLost:
            attempt.log.warning("lease lost; leaving the run to its new manager")
        finally:
            attempt.container_log.close()

    def _run_attempt(self, attempt: LeasedAttempt, prepared: PreparedAttempt) -> None:
        """Launch or adopt the leased attempt, watch it, and finish it."""
        try:
            if not self._launch_or_adopt(attempt, prepared):
                return  # shutting down: the run was handed over
        except BackendError as exc:
            finish_attempt(attempt, Outcome.launch_failed(exc))
            return
        except CancelledBeforeLaunch:
            finish_attempt(attempt, Outcome.not_launched())
            return
        watched = watch_attempt(attempt, prepared)
        if watched is not None:  # None: shutting down, the run was handed over
            finish_attempt(attempt, watched)

    # --- phase 1: decide the attempt ---------------------------------------------------

    def _prepare(self, job_id: uuid.UUID) -> PreparedAttempt | None:
        """Create the next attempt (if admitted) or find the current one, in one transaction."""
        began = self.runtime.clock()  # no later than the new run's lease (its heartbeat_at)
        with self.runtime.sessions.begin() as session:
            found = session.execute(_LOCK_JOB_FOR_ATTEMPT, {"job_id": job_id}).one_or_none()
            if found is None:
                log.warning("no such job", job_id=str(job_id))
                return None
            job, template, upload, db_now = found
            state = job.job_state
            if state is JobState.RETRY_WAIT:
                if not self._is_due(session, job):
                    return None
                transition_job(session, job, JobState.QUEUED, reason="backoff over")
                state = JobState.QUEUED
            if state is JobState.QUEUED:
                return self._start_attempt(session, job, template, upload, began, db_now)
            if state in (JobState.STARTING, JobState.RUNNING):
                run = session.scalars(
                    select(Run).where(Run.job_id == job.id, Run.attempt == job.attempt)
                ).one_or_none()
                if run is None or run.run_state.is_terminal:
                    log.error("active job without a live run", job_id=str(job.id))
                    return None
                return PreparedAttempt(AttemptRef.of(run))
            return None  # terminal

    def _is_due(self, session: Session, job: Job) -> bool:
        """Tell whether a job in backoff may start its next attempt; re-arm it if not."""
        now = session.execute(select(_db_now())).scalar_one()
        if job.next_attempt_at is None or job.next_attempt_at <= now:
            return True
        wait = (job.next_attempt_at - now).total_seconds()
        self.runtime.enqueuer.enqueue(
            job.id, is_batch=job.batch_id is not None, max_runtime_s=job.max_runtime_s, delay_s=wait
        )
        return False

    def _start_attempt(
        self,
        session: Session,
        job: Job,
        template: Template,
        upload: Upload,
        began: float,
        db_now: datetime,
    ) -> PreparedAttempt | None:
        if job.cancel_requested:
            transition_job(session, job, JobState.CANCELLED, reason="cancelled while queued")
            return None
        # Spot until it has been evicted too often, then Regular priority; the budget is
        # reserved at the price the attempt will really run at.
        is_spot = job.is_spot and job.evictions < self.runtime.settings.spot_max_evictions
        admission = admit(session, job, template, self.runtime.settings, is_spot=is_spot)
        if not admission.is_admitted:
            self._note_refusal(session, job, admission.reason or "refused")
            if admission.retry_after_s is not None:
                self.runtime.enqueuer.enqueue(
                    job.id,
                    is_batch=job.batch_id is not None,
                    max_runtime_s=job.max_runtime_s,
                    delay_s=admission.retry_after_s,
                )
            return None
        attempt = job.attempt + 1
        run = Run(
            id=uuid.uuid4(),
            job_id=job.id,
            attempt=attempt,
            container_name=container_name(job.id, attempt),
            backend=self.runtime.backend.name,
            cpu=job.cpu,
            memory_gb=job.memory_gb,
            is_spot=is_spot,
            # The creator holds the first lease: no second transaction to take it.
            lease_owner=self.owner,
            lease_token=1,
            heartbeat_at=func.now(),
        )
        try:
            spec: ContainerSpec | None = self._build_spec(job, run, 1, template, upload, db_now)
        except BackendError:
            spec = None  # e.g. fake jobs refused: the launch path records the refusal
        if spec is not None:
            # Born launching (one INSERT, not an INSERT and an UPDATE): it launches next,
            # and its billed window (and deadline) starts now, before the create request.
            run.state, run.launched_at = RunState.LAUNCHING.value, db_now
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
        return PreparedAttempt(
            AttemptRef.of(run),
            token=1,
            spec=spec,
            max_runtime_s=job.max_runtime_s,
            lease_written_at=began,
            launched_at=db_now if spec is not None else None,
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
        with self.runtime.sessions.begin() as session:
            settings = self.runtime.settings
            return take_lease(
                session, run_id, self.owner, settings.lease_ttl_s, settings.owner_gone_confirm_s
            )

    # --- phase 2: launch or adopt --------------------------------------------------------

    def _launch_or_adopt(self, attempt: LeasedAttempt, prepared: PreparedAttempt) -> bool:
        """Launch the attempt's container or adopt it; False if the run was handed over.

        Raises ``BackendError`` only for a launch the backend refused.
        """
        if prepared.spec is not None:
            # This manager just created the attempt: no container can exist under its
            # fresh name, and the run is already marked launching.
            self._launch(attempt, prepared.spec)
            return True
        token = attempt.token
        status = self._status_keeping_lease(attempt)
        if status is None:
            return False
        with self.runtime.sessions.begin() as session:
            run = session.get_one(Run, attempt.ref.run_id)
            if status.state is not ContainerState.NOT_FOUND:
                data = {"attempt": run.attempt, "lease_token": token}
                record_event(session, run.job_id, "adopted", data, run_id=run.id)
                attempt.log.info("container adopted", state=status.state.value)
                return True
            if run.run_state is RunState.RUNNING:
                return True  # it vanished while unwatched; the watch loop marks it lost
            job = session.get_one(Job, run.job_id)
            if job.cancel_requested:
                raise CancelledBeforeLaunch
            spec = self._spec_for_launch(session, job, run, token)
        self._launch(attempt, spec)
        return True

    def _status_keeping_lease(self, attempt: LeasedAttempt) -> ContainerStatus | None:
        """Read the container's status, asking again (lease renewed) while reads fail.

        A throttled or failing control plane (429, 5xx, a network error) says nothing
        about the container, which may be running fine: the read is retried with
        backoff, honouring the backend's Retry-After but renewing the lease well within
        its TTL, and never taken for a launch failure. None when the manager is
        shutting down (the run is handed over); ``LeaseLost`` if another manager took it.
        """
        settings = self.runtime.settings
        longest_wait = settings.lease_ttl_s / 3
        delay = min(settings.poll_interval_s, longest_wait)
        while True:
            try:
                return self.runtime.backend.status(attempt.name)
            except BackendError as exc:
                if self.runtime.shutdown.is_set():
                    hand_over(attempt)
                    return None
                heartbeat(attempt, None)
                wait = min(exc.retry_after_s or delay, longest_wait)
                attempt.log.warning(
                    "status read failed while adopting; asking again",
                    error=str(exc),
                    retry_in_s=round(wait, 3),
                )
                self.runtime.shutdown.wait(wait)
                delay = min(delay * 2, longest_wait)

    def _spec_for_launch(self, session: Session, job: Job, run: Run, token: int) -> ContainerSpec:
        """Build the run's spec and mark the run launching (in the caller's transaction)."""
        template = session.get_one(Template, job.template_id)
        upload = session.get_one(Upload, job.upload_id)
        # No container exists (the caller looked): the billed window, and the deadline,
        # start with this create request, not with one that was never sent.
        launched_at = session.execute(
            update(Run)
            .where(Run.id == run.id, Run.lease_token == token)
            .values(launched_at=_db_now())
            .returning(Run.launched_at)
        ).scalar_one_or_none()
        if launched_at is None:
            raise LeaseLost
        spec = self._build_spec(job, run, token, template, upload, launched_at)
        if run.run_state is RunState.PENDING:
            transition_run(session, run, RunState.LAUNCHING, lease_token=token)
        return spec

    def _build_spec(
        self,
        job: Job,
        run: Run,
        token: int,
        template: Template,
        upload: Upload,
        launched_at: datetime,
    ) -> ContainerSpec:
        try:
            return build_spec(
                job,
                run,
                token,
                template,
                upload,
                launched_at=launched_at,
                storage=self.runtime.storage,
                settings=self.runtime.settings,
            )
        except FakeJobNotAllowed as exc:
            raise BackendError(str(exc), is_retryable=False) from exc

    def _launch(self, attempt: LeasedAttempt, spec: ContainerSpec) -> None:
        """Launch the container, once the lease is proven fresh.

        A creator paused after committing its run may wake past its TTL, after another
        manager adopted and even finished the attempt: it must launch nothing then.
        """
        if not has_fresh_lease(attempt):
            raise LeaseUnproven
        try:
            with lease_kept_alive(attempt):
                self.runtime.backend.launch(spec)
            # A pause during the call (past a quarter of the TTL) shows here as LeaseLost.
            has_fresh_lease(attempt)
        except BackendError as exc:
            attempt.log.warning("launch refused", error=str(exc), is_retryable=exc.is_retryable)
            raise
        except LeaseLost:
            self._remove_if_stray(attempt)
            raise
        attempt.log.info("container launched", image=spec.image)

    def _remove_if_stray(self, attempt: LeasedAttempt) -> None:
        """Remove the container just launched if its run ended while the launch was sent.

        A manager paused between its lease check and the create request (SIGSTOP, a
        long GC) sends it after another manager adopted, ran and finished the attempt:
        the container it creates then belongs to no live run. It is removed at once;
        should this manager die first, the janitor removes it and books its time.
        """
        with self.runtime.sessions() as session:
            run = session.get_one(Run, attempt.ref.run_id)
            if run.run_state in LIVE_RUN_STATES:
                return  # the run's current manager watches the container (the same name)
        try:
            self.runtime.backend.remove(attempt.name)
            attempt.log.warning("removed a container launched after its run had ended")
        except BackendError as exc:
            attempt.log.warning("could not remove a stray container", error=str(exc))

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
                self.runtime.shutdown.wait(delay)
        return None


def _db_now() -> ColumnElement[datetime]:
    return func.now()
