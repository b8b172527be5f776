"""Admission: may this attempt start now? Global caps, fair shares, create rates, batch
caps and budget.

Admission runs in the same transaction that creates the run, under one transaction-
scoped advisory lock, so concurrent managers see each other's admitted runs and can
never together exceed a cap or a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from taskmanager.cost import estimate_job_cost
from taskmanager.models import Batch, Job, Run, Template
from taskmanager.settings import Settings
from taskmanager.states import LIVE_RUN_STATES, BatchState, PausedReason
from taskmanager.supervision.fairness import is_someone_fairer, scarce_slots

log = structlog.get_logger(__name__)

# Arbitrary constant naming clipyard's admission lock among PostgreSQL advisory locks.
ADMISSION_LOCK_KEY = 0x636C6970  # "clip"


@dataclass(frozen=True)
class Admission:
    """The verdict: admitted (with the budget reserved), or why not and when to ask again.

    ``retry_after_s`` is None when asking again will not help until something changes
    (a paused batch waits for an operator).
    """

    is_admitted: bool
    reason: str | None = None
    retry_after_s: float | None = None
    reserved_usd: Decimal = Decimal(0)


# Built once (as the transitions' statements are): admission runs them for every attempt,
# under the global admission lock.
_TAKE_ADMISSION_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_LOCK_BATCH = select(Batch).where(Batch.id == bindparam("batch_id")).with_for_update()
_LIVE_RUNS = Run.state.in_(LIVE_RUN_STATES)
# The global caps and the batch's own in one query: live runs, their CPUs, and how many
# of them are the batch's (none without a batch: NULL matches no row).
_COUNT_LIVE_RUNS = (
    select(
        func.count(),
        func.coalesce(func.sum(Run.cpu), 0),
        func.count().filter(Job.batch_id == bindparam("batch_id")),
    )
    .select_from(Run)
    .join(Job, Job.id == Run.job_id)
    .where(_LIVE_RUNS)
)


def _refuse(reason: str, retry_after_s: float | None) -> Admission:
    return Admission(is_admitted=False, reason=reason, retry_after_s=retry_after_s)


def admit(
    session: Session, job: Job, template: Template, settings: Settings, *, is_spot: bool
) -> Admission:
    """Decide whether ``job``'s next attempt may launch, reserving budget if it may.

    ``is_spot`` is the priority the attempt will run at (Regular once a Spot job has
    been evicted too often): its reservation is priced at that, not at the job's wish.
    Must run inside the transaction that then creates the run.
    """
    session.execute(_TAKE_ADMISSION_LOCK, {"key": ADMISSION_LOCK_KEY})
    # The batch's row before its runs are counted: a run counted live here has not been
    # settled yet (settling writes this row), so its settle comes after this transaction
    # and clears a budget_wait this one may set.
    batch = None
    if job.batch_id is not None:
        batch = session.execute(_LOCK_BATCH, {"batch_id": job.batch_id}).scalar_one()
    live, live_cpu, live_in_batch = session.execute(
        _COUNT_LIVE_RUNS, {"batch_id": job.batch_id}
    ).one()
    retry = settings.admission_retry_s
    if live >= settings.max_concurrent_containers:
        return _refuse("max_concurrent_containers", retry)
    if Decimal(live_cpu) + job.cpu > settings.max_total_cpu:
        return _refuse("max_total_cpu", retry)
    free = scarce_slots(settings, live) if settings.fair_admission else None
    if free is not None and is_someone_fairer(session, job, free):
        return _refuse("fair_share", retry)
    if settings.container_backend == "aci":
        refusal = _check_create_rate(session, settings)
        if refusal is not None:
            return refusal
    if batch is None:
        return Admission(is_admitted=True)
    estimate = estimate_job_cost(session, job, template, settings, is_spot=is_spot)
    return _admit_to_batch(session, batch, job, estimate, live_in_batch)


def _check_create_rate(session: Session, settings: Settings) -> Admission | None:
    """Refuse when ACI's create rate (per 5 minutes, per hour) would be exceeded."""
    for window_s, limit, reason in (
        (300, settings.container_creates_per_5min, "create_rate_5min"),
        (3600, settings.container_creates_per_hour, "create_rate_hour"),
    ):
        window = timedelta(seconds=window_s)
        count, oldest, now = session.execute(
            select(func.count(), func.min(Run.created_at), func.now()).where(
                Run.created_at > func.now() - window
            )
        ).one()
        if count >= limit:
            # The window frees a slot when its oldest create falls out of it.
            return _refuse(reason, max(1.0, (oldest + window - now).total_seconds()))
    return None


def _admit_to_batch(
    session: Session, batch: Batch, job: Job, estimate: Decimal, running: int
) -> Admission:
    """Apply the batch's concurrency cap and budget; reserve the estimate if admitted.

    ``batch`` is locked; ``running`` is its live runs, counted after it was locked.

    A job refused by its batch is not re-polled: it stays queued until a slot or money
    frees up, and whoever frees it (an attempt ending, the budget raised) wakes the
    batch's next jobs (``wake_batch``).
    """
    if batch.state != BatchState.OPEN:
        return _refuse(batch.paused_reason or f"batch_{batch.state}", None)
    if running >= batch.max_concurrent:
        return _refuse("batch_max_concurrent", None)
    if batch.spent_usd + batch.reserved_usd + estimate > batch.budget_usd:
        if running > 0:
            # Running jobs may cost less than reserved: decide once they have settled
            # (settle_batch clears the mark, so the reconciler leaves the batch alone).
            batch.paused_reason = PausedReason.BUDGET_WAIT
            return _refuse(PausedReason.BUDGET_WAIT, None)
        batch.state = BatchState.PAUSED
        batch.paused_reason = PausedReason.BUDGET_EXHAUSTED
        log.info("batch paused", batch_id=str(batch.id), reason=PausedReason.BUDGET_EXHAUSTED)
        return _refuse(PausedReason.BUDGET_EXHAUSTED, None)
    batch.reserved_usd += estimate
    return Admission(is_admitted=True, reserved_usd=estimate)
