"""Batches: an operator's set of jobs under one money budget and concurrency cap.

Money is ``Decimal`` dollars throughout; a float never touches a budget. The jobs of a
batch (submit rows, cancel, retry, report) are in ``batchjobs.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.batches.ledger import wake_batch
from taskmanager.errors import DomainError, InvalidRequest
from taskmanager.limits import MAX_CONCURRENT, resolve_resources
from taskmanager.models import Batch, Job
from taskmanager.queueing import Enqueuer
from taskmanager.settings import Settings
from taskmanager.states import BatchState, PausedReason

log = structlog.get_logger(__name__)

MAX_BUDGET_USD = Decimal(100_000)


class BatchError(DomainError):
    """Base of the batch service's errors (the API maps each to a status code)."""


class BatchNotFound(BatchError):
    """No such batch (or not one the caller may see)."""


class BatchNameTaken(BatchError):
    """The owner already has a batch of that name."""


class BatchStateConflict(BatchError):
    """The batch's state does not allow the operation (e.g. resuming a cancelled batch)."""


@dataclass(frozen=True)
class BatchRequest:
    """What an operator asks for; bounds are checked by ``create_batch``."""

    owner_id: uuid.UUID
    name: str
    budget_usd: Decimal
    max_concurrent: int = 10
    cpu: Decimal | None = None
    memory_gb: Decimal | None = None
    max_runtime_s: int | None = None
    is_spot: bool = False


@dataclass(frozen=True)
class BatchView:
    """A batch with its jobs counted by state."""

    batch: Batch
    jobs_by_state: dict[str, int]


def parse_money(value: str | int | Decimal, field: str) -> Decimal:
    """Return ``value`` as dollars with at most six decimals; raise on anything else."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidRequest(field, "must be a decimal number of dollars") from exc
    if not amount.is_finite() or amount.as_tuple().exponent < -6:  # type: ignore[operator]
        raise InvalidRequest(field, "must be a finite amount with at most 6 decimals")
    return amount


def create_batch(
    sessions: sessionmaker[Session], settings: Settings, request: BatchRequest
) -> Batch:
    """Create an open batch; raise ``InvalidRequest`` or ``BatchNameTaken``."""
    name = request.name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("name", "must be 1 to 200 characters")
    check_budget(request.budget_usd)
    MAX_CONCURRENT.check(request.max_concurrent)
    resources = resolve_resources(
        settings, cpu=request.cpu, memory_gb=request.memory_gb, max_runtime_s=request.max_runtime_s
    )
    batch = Batch(
        owner_id=request.owner_id,
        name=name,
        budget_usd=request.budget_usd,
        max_concurrent=request.max_concurrent,
        cpu=resources.cpu,
        memory_gb=resources.memory_gb,
        max_runtime_s=resources.max_runtime_s,
        is_spot=request.is_spot,
        reserved_usd=Decimal(0),
        spent_usd=Decimal(0),
        state=BatchState.OPEN,
    )
    try:
        with sessions.begin() as session:
            session.add(batch)
    except IntegrityError as exc:
        raise BatchNameTaken(name) from exc
    return batch


def _counts(session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(Job.state, func.count()).where(Job.batch_id == batch_id).group_by(Job.state)
    )
    return {state: count for state, count in rows}


def owned_batch(
    session: Session, batch_id: uuid.UUID, owner_id: uuid.UUID | None, *, for_update: bool = False
) -> Batch:
    """Return the batch; with ``owner_id``, only if that user owns it (else ``BatchNotFound``)."""
    batch = session.get(Batch, batch_id, with_for_update=for_update)
    if batch is None or (owner_id is not None and batch.owner_id != owner_id):
        raise BatchNotFound(str(batch_id))
    return batch


def get_batch(
    sessions: sessionmaker[Session], batch_id: uuid.UUID, *, owner_id: uuid.UUID | None = None
) -> BatchView:
    """Return the batch with job counts; with ``owner_id``, only if that user owns it."""
    with sessions() as session:
        return BatchView(owned_batch(session, batch_id, owner_id), _counts(session, batch_id))


def list_batches(
    sessions: sessionmaker[Session],
    *,
    owner_id: uuid.UUID | None = None,
    name: str | None = None,
    limit: int = 100,
) -> list[Batch]:
    """List batches, newest first; with ``owner_id``, only that user's; with ``name``, by name."""
    query = select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)
    if owner_id is not None:
        query = query.where(Batch.owner_id == owner_id)
    if name is not None:
        query = query.where(Batch.name == name.strip())
    with sessions() as session:
        return list(session.scalars(query))


def check_budget(budget_usd: Decimal) -> None:
    """Raise ``InvalidRequest`` naming ``budget_usd`` unless it is within bounds."""
    if not Decimal(0) <= budget_usd <= MAX_BUDGET_USD:
        raise InvalidRequest("budget_usd", f"must be between 0 and {MAX_BUDGET_USD} dollars")


def set_budget(
    sessions: sessionmaker[Session],
    enqueuer: Enqueuer,
    batch_id: uuid.UUID,
    budget_usd: Decimal,
    *,
    owner_id: uuid.UUID | None = None,
) -> BatchView:
    """Set the batch's budget; a batch paused by its budget resumes and its jobs wake.

    A lower budget than already spent and reserved is allowed: it admits nothing more,
    and the batch pauses at its next admission.
    """
    check_budget(budget_usd)
    with sessions.begin() as session:
        batch = owned_batch(session, batch_id, owner_id, for_update=True)
        if batch.state == BatchState.CANCELLED:
            raise BatchStateConflict("a cancelled batch cannot be given a budget")
        previous = batch.budget_usd
        batch.budget_usd = budget_usd
        if (
            batch.state == BatchState.PAUSED
            and batch.paused_reason == PausedReason.BUDGET_EXHAUSTED
        ):
            batch.state, batch.paused_reason = BatchState.OPEN, None
        log.info(
            "batch budget set",
            batch_id=str(batch_id),
            previous_usd=str(previous),
            budget_usd=str(budget_usd),
            state=batch.state,
        )
    wake_batch(sessions, enqueuer, batch_id)
    return get_batch(sessions, batch_id)
