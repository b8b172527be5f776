"""A batch's jobs: create them from manifest rows, cancel, retry the failed, report.

Rows are idempotent by ``row_id`` within their batch, so an interrupted submit run again
creates nothing twice. Batch jobs are not woken one by one: the batch's free slots are
(``wake_batch``), so a 10,000-row batch does not make 10,000 managers refuse a job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.batches.ledger import wake_batch
from taskmanager.batches.service import BatchStateConflict, BatchView, get_batch, owned_batch
from taskmanager.errors import InvalidRequest
from taskmanager.jobs import JobRequest, cancel_job, retry_job, submit_job
from taskmanager.models import Job, Run
from taskmanager.queueing import Enqueuer
from taskmanager.settings import Settings
from taskmanager.states import TERMINAL_JOB_STATES, BatchState, JobState

log = structlog.get_logger(__name__)

MAX_ROWS_PER_REQUEST = 500
RETRYABLE_STATES = (JobState.FAILED.value, JobState.TIMED_OUT.value)


@dataclass(frozen=True)
class BatchRow:
    """One manifest row as the API receives it: the photo is an upload id by now."""

    row_id: str
    template: str
    upload_id: uuid.UUID
    crop: tuple[int, int, int, int] | None = None
    cpu: Decimal | None = None
    memory_gb: Decimal | None = None
    max_runtime_s: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowResult:
    """The job a row maps to, and whether this call created it."""

    row_id: str
    job_id: uuid.UUID
    state: str
    is_created: bool


@dataclass(frozen=True)
class ReportRow:
    """One line of a batch report."""

    row_id: str | None
    job_id: uuid.UUID
    state: str
    attempts: int
    runtime_s: float
    cost_usd: Decimal
    has_output: bool
    error_code: str | None
    error_message: str | None
    created_at: datetime


class _Deferred:
    """An enqueuer that wakes nobody: the batch wakes its own jobs as slots free."""

    def enqueue(self, job_id: uuid.UUID, **_: Any) -> None:
        """Do nothing: ``wake_batch`` decides which jobs run next."""

    def is_queued(
        self, job_id: uuid.UUID, *, is_batch: bool, due_by: datetime | None = None
    ) -> bool:
        """Say no entry is pending (none was made)."""
        return False


def submit_rows(
    sessions: sessionmaker[Session],
    enqueuer: Enqueuer,
    settings: Settings,
    batch_id: uuid.UUID,
    owner_id: uuid.UUID,
    rows: list[BatchRow],
) -> list[RowResult]:
    """Create a job per row (the batch's resources unless the row overrides them).

    A row already submitted returns its job. A bad row raises ``InvalidRequest``
    naming ``rows[i].field``; the rows before it stay created (submitting again resumes).
    """
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise InvalidRequest("rows", f"at most {MAX_ROWS_PER_REQUEST} rows per request")
    with sessions() as session:
        batch = owned_batch(session, batch_id, owner_id)
        if batch.state == BatchState.CANCELLED:
            raise BatchStateConflict("the batch is cancelled: create a new one")
        defaults = (batch.cpu, batch.memory_gb, batch.max_runtime_s)
    results: list[RowResult] = []
    deferred = _Deferred()
    try:
        for index, row in enumerate(rows):
            request = JobRequest(
                owner_id=owner_id,
                template_name=row.template,
                upload_id=row.upload_id,
                crop=row.crop,
                batch_id=batch_id,
                row_id=row.row_id,
                cpu=row.cpu if row.cpu is not None else defaults[0],
                memory_gb=row.memory_gb if row.memory_gb is not None else defaults[1],
                max_runtime_s=row.max_runtime_s or defaults[2],
                params=dict(row.params),
            )
            try:
                job, created = submit_job(sessions, deferred, settings, request)
            except InvalidRequest as exc:
                message = str(exc).partition(": ")[2] or str(exc)
                raise InvalidRequest(f"rows[{index}].{exc.field}", message) from exc
            results.append(RowResult(row.row_id, job.id, job.state, created))
    finally:
        if results:
            wake_batch(sessions, enqueuer, batch_id)
    return results


def _job_ids(session: Session, batch_id: uuid.UUID, states: list[str] | None) -> list[uuid.UUID]:
    query = select(Job.id).where(Job.batch_id == batch_id).order_by(Job.created_at, Job.id)
    if states is not None:
        query = query.where(Job.state.in_(states))
    return list(session.scalars(query))


def cancel_batch(
    sessions: sessionmaker[Session], batch_id: uuid.UUID, *, owner_id: uuid.UUID | None = None
) -> BatchView:
    """Cancel the batch: admit nothing more, cancel waiting jobs, stop running ones.

    The batch is marked first (its own transaction), so no job of it is admitted while
    the jobs are cancelled one by one, each with its event.
    """
    with sessions.begin() as session:
        batch = owned_batch(session, batch_id, owner_id, for_update=True)
        batch.state, batch.paused_reason = BatchState.CANCELLED, None
        unfinished = [s.value for s in JobState if s not in TERMINAL_JOB_STATES]
        job_ids = _job_ids(session, batch_id, unfinished)
    for job_id in job_ids:
        cancel_job(sessions, job_id)
    log.info("batch cancelled", batch_id=str(batch_id), jobs=len(job_ids))
    return get_batch(sessions, batch_id)


def retry_failed(
    sessions: sessionmaker[Session],
    enqueuer: Enqueuer,
    batch_id: uuid.UUID,
    *,
    owner_id: uuid.UUID | None = None,
) -> tuple[int, BatchView]:
    """Queue the batch's failed and timed-out jobs again; return how many and the batch."""
    with sessions() as session:
        batch = owned_batch(session, batch_id, owner_id)
        if batch.state == BatchState.CANCELLED:
            raise BatchStateConflict("a cancelled batch cannot be retried: create a new one")
        job_ids = _job_ids(session, batch_id, list(RETRYABLE_STATES))
    deferred = _Deferred()
    for job_id in job_ids:
        retry_job(sessions, deferred, job_id)
    if job_ids:
        wake_batch(sessions, enqueuer, batch_id)
    return len(job_ids), get_batch(sessions, batch_id)


def report_rows(
    sessions: sessionmaker[Session],
    batch_id: uuid.UUID,
    *,
    owner_id: uuid.UUID | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 1000,
) -> list[ReportRow]:
    """Return the batch's jobs in submission order, with attempts, runtime, cost, errors.

    ``after`` is the (created_at, id) of the last row of the previous page.
    """
    runtime = (
        select(Run.job_id, func.coalesce(func.sum(Run.billed_seconds), 0.0).label("seconds"))
        .group_by(Run.job_id)
        .subquery()
    )
    query = (
        select(Job, func.coalesce(runtime.c.seconds, 0.0))
        .outerjoin(runtime, runtime.c.job_id == Job.id)
        .where(Job.batch_id == batch_id)
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Job.created_at, Job.id) > tuple_(after[0], after[1]))
    with sessions() as session:
        owned_batch(session, batch_id, owner_id)
        return [
            ReportRow(
                row_id=job.row_id,
                job_id=job.id,
                state=job.state,
                attempts=job.attempt,
                runtime_s=float(seconds),
                cost_usd=job.actual_cost_usd,
                has_output=job.output_key is not None,
                error_code=job.error_code,
                error_message=job.error_message,
                created_at=job.created_at,
            )
            for job, seconds in session.execute(query)
        ]
