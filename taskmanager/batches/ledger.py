"""The budget ledger of a batch: its free slots, the jobs next in line, and settling money.

Admission reserves a job's estimate on the batch's row (``supervision/admission.py``)
under the admission lock; finishing settles the reservation against what the attempt
really cost, here, in the same transaction that ends the attempt, and then wakes the
jobs that the freed slot or money lets in.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import structlog
from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.models import Batch, Job, Run
from taskmanager.queueing import Enqueuer
from taskmanager.states import LIVE_RUN_STATES, BatchState, JobState, PausedReason

log = structlog.get_logger(__name__)

# Built once (as the transitions' statements are): finishing runs them for every attempt.
_LIVE_IN_BATCH = (
    select(func.count())
    .select_from(Run)
    .join(Job, Job.id == Run.job_id)
    .where(Job.batch_id == bindparam("batch_id"), Run.state.in_(LIVE_RUN_STATES))
    .scalar_subquery()
)
_FREE_SLOTS = (
    select(Batch.max_concurrent - _LIVE_IN_BATCH)
    .where(Batch.id == bindparam("batch_id"), Batch.state == BatchState.OPEN)
    .scalar_subquery()
)
# The batch's queued jobs, oldest first, as many as it has free slots (the LIMIT): no
# such batch, or not open, is NULL, so no rows; never a negative LIMIT.
_NEXT_IN_BATCH = (
    select(Job.id, Job.max_runtime_s)
    .where(Job.batch_id == bindparam("batch_id"), Job.state == JobState.QUEUED)
    .order_by(Job.created_at, Job.id)
    .limit(func.greatest(0, func.coalesce(_FREE_SLOTS, 0)))
)


def waiting_batch_jobs(session: Session, batch_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    """Return (id, max_runtime_s) of the queued jobs next in line for a free batch slot.

    As many as the batch has free slots, oldest first; none unless the batch is open.
    One statement (the free slots are its LIMIT): finishing runs it while every other
    manager of the batch waits for the batch row it holds.
    """
    rows = session.execute(_NEXT_IN_BATCH, {"batch_id": batch_id}).all()
    return [(job_id, max_runtime) for job_id, max_runtime in rows]


def wake_batch(sessions: sessionmaker[Session], enqueuer: Enqueuer, batch_id: uuid.UUID) -> int:
    """Wake managers for the batch's next queued jobs, one per free slot; return how many.

    Call after the transaction that freed a slot (or raised the budget) has committed.
    Each wake-up is the job's own unique queue entry: waking a job that is already
    waiting in the queue adds nothing, and waking one a manager is admitting right now
    runs once more shortly after (it then finds the job started, or takes the slot),
    so a freed slot is never left unclaimed and no job is admitted twice.
    """
    with sessions() as session:
        waiting = waiting_batch_jobs(session, batch_id)
    wake_jobs(enqueuer, waiting)
    return len(waiting)


def wake_jobs(enqueuer: Enqueuer, waiting: list[tuple[uuid.UUID, int]]) -> None:
    """Enqueue the batch jobs ``waiting_batch_jobs`` chose (after their transaction)."""
    for job_id, max_runtime in waiting:
        try:
            enqueuer.enqueue(job_id, is_batch=True, max_runtime_s=max_runtime)
        except Exception as exc:  # Redis down: the reconciler wakes them from Postgres
            log.warning("batch wake-up failed", job_id=str(job_id), error=str(exc))
            return


def settle_batch(
    session: Session, batch_id: uuid.UUID, reserved_usd: Decimal, actual_cost: Decimal
) -> Batch:
    """Replace an attempt's reservation in its batch by what it actually cost.

    One UPDATE, last in the finishing transaction: every manager finishing or admitting
    one of the batch's jobs needs this row, so it is held for as short a time as can be.
    """
    return session.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(
            reserved_usd=func.greatest(0, Batch.reserved_usd - reserved_usd),
            spent_usd=Batch.spent_usd + actual_cost,
            # Money may have come free: the next wake-up decides.
            paused_reason=case(
                (Batch.paused_reason == PausedReason.BUDGET_WAIT, None), else_=Batch.paused_reason
            ),
        )
        .returning(Batch)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).scalar_one()
