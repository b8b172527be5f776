"""The job service: submit, cancel, retry, get, list and read the events of jobs.

Callers (the API, the CLI, tests) pass a session factory and an enqueuer in. Every
state change commits with its event before anything is enqueued; if enqueueing fails
the job stays queued in Postgres and the reconciler enqueues it later.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.errors import DomainError, InvalidRequest
from taskmanager.limits import Resources, resolve_resources
from taskmanager.models import Batch, Job, JobEvent, Template, Upload
from taskmanager.queueing import Enqueuer
from taskmanager.settings import Settings
from taskmanager.states import TERMINAL_JOB_STATES, JobState
from taskmanager.transitions import record_event, transition_job

log = structlog.get_logger(__name__)

# Every state but the terminal ones: a job that has not ended.
_LIVE_JOB_STATES = [s.value for s in JobState if s not in TERMINAL_JOB_STATES]
# The first key of a user's lock while their live jobs are counted ("cyjl").
_LIVE_JOBS_LOCK_SPACE = 0x63796A6C


class JobError(DomainError):
    """Base of the job service's errors (the API maps each to a status code)."""


class JobNotFound(JobError):
    """No such job (or not one the caller may see)."""


class JobStateConflict(JobError):
    """The job's state does not allow the operation (e.g. retrying a success)."""


@dataclass(frozen=True)
class JobRequest:
    """What a client asks for; bounds are checked by ``submit_job``."""

    owner_id: uuid.UUID
    template_name: str
    upload_id: uuid.UUID
    crop: tuple[int, int, int, int] | None = None
    idempotency_key: str | None = None
    batch_id: uuid.UUID | None = None
    row_id: str | None = None
    cpu: Decimal | None = None
    memory_gb: Decimal | None = None
    max_runtime_s: int | None = None
    max_attempts: int | None = None
    # None: the default (Spot for batch jobs where operators made it so, else Regular).
    is_spot: bool | None = None
    priority: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    # Whether the per-user limits apply: the API sets it for callers who are not
    # operators (operators, and the code's own callers, are trusted with the capacity).
    is_limited: bool = False


def _check_bounds(request: JobRequest, settings: Settings) -> Resources:
    resources = resolve_resources(
        settings,
        cpu=request.cpu,
        memory_gb=request.memory_gb,
        max_runtime_s=request.max_runtime_s,
        max_attempts=request.max_attempts,
    )
    if request.idempotency_key is not None and not 1 <= len(request.idempotency_key) <= 200:
        raise InvalidRequest("idempotency_key", "must be 1 to 200 characters")
    if "fake" in request.params and not settings.allow_fake_jobs:
        raise InvalidRequest("params.fake", "fake jobs are not enabled here")
    if not request.is_limited:
        return resources
    # A user's explicit ask above their limit is refused; a default above it is lowered.
    for name, asked, limit in (
        ("max_attempts", request.max_attempts, settings.user_max_attempts),
        ("max_runtime_s", request.max_runtime_s, settings.user_max_runtime_s),
    ):
        if asked is not None and asked > limit:
            raise InvalidRequest(name, f"must be at most {limit} for users")
    return dataclasses.replace(
        resources,
        max_attempts=min(resources.max_attempts, settings.user_max_attempts),
        max_runtime_s=min(resources.max_runtime_s, settings.user_max_runtime_s),
    )


def _check_live_jobs(session: Session, request: JobRequest, settings: Settings) -> None:
    """Refuse a user's new job while they have their limit of jobs not yet ended.

    The user's advisory lock (for this transaction) keeps two concurrent submits from
    both passing the count.
    """
    if not request.is_limited:
        return
    session.execute(
        text("SELECT pg_advisory_xact_lock(:space, hashtext(:owner))"),
        {"space": _LIVE_JOBS_LOCK_SPACE, "owner": str(request.owner_id)},
    )
    live = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == request.owner_id, Job.state.in_(_LIVE_JOB_STATES))
    )
    if (live or 0) >= settings.user_max_live_jobs:
        raise TooManyLiveJobs(settings.user_max_live_jobs)


def _check_crop(crop: tuple[int, int, int, int] | None, upload: Upload) -> None:
    if crop is None:
        return
    x, y, width, height = crop
    if width <= 0 or height <= 0 or x < 0 or y < 0:
        raise InvalidRequest("crop", "x and y must be >= 0, width and height > 0")
    if x + width > upload.width or y + height > upload.height:
        raise InvalidRequest("crop", f"must lie inside the {upload.width}x{upload.height} photo")


class TooManyLiveJobs(JobError):
    """The user already has their limit of jobs that have not ended."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"you already have {limit} jobs that have not finished; wait for some to end"
        )
        self.limit = limit
        self.retry_after_s = 30


class RetryLimitReached(JobError):
    """The job was retried by hand as often as a user may."""


class IdempotencyKeyReused(JobError):
    """The idempotency key (or batch row id) names a job made from a different request."""


def _existing(session: Session, request: JobRequest) -> Job | None:
    if request.idempotency_key is not None:
        found = session.scalars(
            select(Job).where(
                Job.owner_id == request.owner_id, Job.idempotency_key == request.idempotency_key
            )
        ).first()
        if found is not None:
            return found
    if request.batch_id is not None and request.row_id is not None:
        return session.scalars(
            select(Job).where(Job.batch_id == request.batch_id, Job.row_id == request.row_id)
        ).first()
    return None


def _check_replay(job: Job, template_id: uuid.UUID, request: JobRequest) -> Job:
    """Return the stored job if ``request`` asks for the same thing, else refuse it."""
    crop = list(request.crop) if request.crop is not None else None
    if (job.template_id, job.upload_id, job.params.get("crop"), job.batch_id) != (
        template_id,
        request.upload_id,
        crop,
        request.batch_id,
    ):
        what = "Idempotency-Key" if request.idempotency_key is not None else "row_id"
        raise IdempotencyKeyReused(
            f"{what} was already used for a different request (job {job.id})"
        )
    return job


def _template_and_upload(session: Session, request: JobRequest) -> tuple[uuid.UUID, Upload]:
    """Look both up in one round trip; raise naming whichever is missing."""
    row = session.execute(
        select(Template.id, Upload)
        .outerjoin(Upload, (Upload.id == request.upload_id) & (Upload.owner_id == request.owner_id))
        .where(Template.name == request.template_name, Template.is_active)
    ).first()
    if row is None:
        raise InvalidRequest("template", f"no template named {request.template_name!r}")
    template_id, upload = row
    if upload is None:
        raise InvalidRequest("upload_id", "no such upload of yours")
    return template_id, upload


def submit_job(
    sessions: sessionmaker[Session], enqueuer: Enqueuer, settings: Settings, request: JobRequest
) -> tuple[Job, bool]:
    """Store a job and wake a manager; return (job, created).

    A repeated idempotency key (or batch row id) with the same request returns the job
    already stored; with a different request it raises ``IdempotencyKeyReused``. The
    common path is four round trips: the lookup, two inserts and the commit.
    """
    resources = _check_bounds(request, settings)
    with sessions.begin() as session:
        template_id, upload = _template_and_upload(session, request)
        # A replayed key is not a new job; only limited callers pay for the lookup.
        if request.is_limited and (
            request.idempotency_key is None or _existing(session, request) is None
        ):
            _check_live_jobs(session, request, settings)
        _check_crop(request.crop, upload)
        is_spot = bool(request.is_spot)
        if request.batch_id is not None:
            batch = session.get(Batch, request.batch_id)
            if batch is None or batch.owner_id != request.owner_id:
                raise InvalidRequest("batch_id", "no such batch of yours")
            if request.is_spot is None:
                is_spot = batch.is_spot or settings.is_spot_default_for_batches
        params = dict(request.params)
        # Kept so a manual retry grants the same number of attempts again.
        params["attempts_per_try"] = resources.max_attempts
        if request.crop is not None:
            params["crop"] = list(request.crop)
        # ON CONFLICT DO NOTHING: a repeated key (even one a concurrent request is
        # inserting right now: Postgres waits for it) inserts nothing and returns no row.
        job = session.scalars(
            pg_insert(Job)
            .values(
                owner_id=request.owner_id,
                template_id=template_id,
                upload_id=upload.id,
                batch_id=request.batch_id,
                row_id=request.row_id,
                idempotency_key=request.idempotency_key,
                params=params,
                state=JobState.QUEUED.value,
                priority=request.priority,
                max_attempts=resources.max_attempts,
                max_runtime_s=resources.max_runtime_s,
                cpu=resources.cpu,
                memory_gb=resources.memory_gb,
                is_spot=is_spot,
            )
            .on_conflict_do_nothing()
            .returning(Job)
        ).first()
        if job is None:
            existing = _existing(session, request)
            if existing is None:  # only a clash of random ids could get here
                raise RuntimeError("the job's insert conflicted with no job of this request")
            return _check_replay(existing, template_id, request), False
        # Nobody else can see the new row yet, so the event needs no lock on it.
        record_event(
            session,
            job.id,
            "state",
            {"reason": "submitted"},
            to_state=job.state,
            holds_job_lock=True,
        )
    _wake(enqueuer, job)
    return job, True


def _wake(enqueuer: Enqueuer, job: Job) -> None:
    """Enqueue after commit; on failure the reconciler enqueues it from Postgres later."""
    try:
        enqueuer.enqueue(job.id, is_batch=job.batch_id is not None, max_runtime_s=job.max_runtime_s)
    except Exception as exc:  # Redis down, network: the job is safe in Postgres
        log.warning("enqueue failed; the reconciler will retry", job_id=str(job.id), error=str(exc))


def get_job(
    sessions: sessionmaker[Session], job_id: uuid.UUID, *, owner_id: uuid.UUID | None = None
) -> Job:
    """Return the job; with ``owner_id``, only if that user owns it."""
    with sessions() as session:
        job = session.get(Job, job_id)
    if job is None or (owner_id is not None and job.owner_id != owner_id):
        raise JobNotFound(str(job_id))
    return job


def list_jobs(
    sessions: sessionmaker[Session],
    *,
    owner_id: uuid.UUID | None = None,
    states: list[JobState] | None = None,
    batch_id: uuid.UUID | None = None,
    template_name: str | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Job]:
    """List jobs, newest first, filtered by owner, states, batch and template.

    ``before`` is the (created_at, id) of the last job of the previous page: a keyset
    cursor, so pages stay stable while new jobs arrive.
    """
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    if states:
        query = query.where(Job.state.in_([s.value for s in states]))
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    if template_name is not None:
        query = query.join(Template, Template.id == Job.template_id).where(
            Template.name == template_name
        )
    if before is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(before[0], before[1]))
    with sessions() as session:
        return list(session.scalars(query))


def job_events(
    sessions: sessionmaker[Session], job_id: uuid.UUID, *, after: int = 0, limit: int = 500
) -> list[JobEvent]:
    """Return the job's events with an id greater than ``after``, oldest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
        )


def cancel_job(
    sessions: sessionmaker[Session], job_id: uuid.UUID, *, owner_id: uuid.UUID | None = None
) -> Job:
    """Cancel the job: at once if nothing runs, else ask its manager to stop the container."""
    with sessions.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or (owner_id is not None and job.owner_id != owner_id):
            raise JobNotFound(str(job_id))
        state = job.job_state
        if state in TERMINAL_JOB_STATES:
            return job
        if state in (JobState.QUEUED, JobState.RETRY_WAIT):
            transition_job(
                session, job, JobState.CANCELLED, reason="cancelled", cancel_requested=True
            )
        elif not job.cancel_requested:
            job.cancel_requested = True
            record_event(session, job.id, "cancel_requested", {})
    return job


def retry_job(
    sessions: sessionmaker[Session],
    enqueuer: Enqueuer,
    job_id: uuid.UUID,
    *,
    owner_id: uuid.UUID | None = None,
    max_retries: int | None = None,
) -> Job:
    """Queue a failed, cancelled or timed-out job again with a fresh set of attempts.

    ``max_retries``: how many times a job may be retried by hand (None: no limit, for
    operators); each retry grants fresh attempts, so it is bounded for users.
    """
    with sessions.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or (owner_id is not None and job.owner_id != owner_id):
            raise JobNotFound(str(job_id))
        if job.job_state not in (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT):
            raise JobStateConflict(f"a {job.state} job cannot be retried")
        retries = int(job.params.get("retries", 0))
        if max_retries is not None and retries >= max_retries:
            raise RetryLimitReached(
                f"this job was retried {retries} times already (the limit is {max_retries});"
                " submit it again as a new job if it should run once more"
            )
        job.params = {**job.params, "retries": retries + 1}
        transition_job(
            session,
            job,
            JobState.QUEUED,
            reason="retried",
            max_attempts=job.attempt + int(job.params.get("attempts_per_try", job.max_attempts)),
            cancel_requested=False,
            error_code=None,
            error_message=None,
            finished_at=None,
            progress=0.0,
        )
    _wake(enqueuer, job)
    return job
