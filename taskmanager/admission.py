"""Admission: may this attempt start now? Global caps, create rates, batch caps and budget.

Admission runs in the same transaction that creates the run, under one transaction-
scoped advisory lock, so concurrent managers see each other's admitted runs and can
never together exceed a cap or a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from taskmanager.cost import estimate_job_cost
from taskmanager.models import Batch, Job, Run, Template
from taskmanager.settings import Settings

# Arbitrary constant naming clipyard's admission lock among PostgreSQL advisory locks.
ADMISSION_LOCK_KEY = 0x636C6970  # "clip"
LIVE_RUN_STATES = ("pending", "launching", "running")


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


def _refuse(reason: str, retry_after_s: float | None) -> Admission:
    return Admission(is_admitted=False, reason=reason, retry_after_s=retry_after_s)


def admit(session: Session, job: Job, template: Template, settings: Settings) -> Admission:
    """Decide whether ``job``'s next attempt may launch, reserving budget if it may.

    Must run inside the transaction that then creates the run.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})
    live = session.execute(
        select(func.count(), func.coalesce(func.sum(Run.cpu), 0)).where(
            Run.state.in_(LIVE_RUN_STATES)
        )
    ).one()
    retry = settings.admission_retry_s
    if live[0] >= settings.max_concurrent_containers:
        return _refuse("max_concurrent_containers", retry)
    if Decimal(live[1]) + job.cpu > settings.max_total_cpu:
        return _refuse("max_total_cpu", retry)
    if settings.container_backend == "aci":
        refusal = _check_create_rate(session, settings)
        if refusal is not None:
            return refusal
    if job.batch_id is None:
        return Admission(is_admitted=True)
    return _admit_to_batch(session, job, template, settings)


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
    session: Session, job: Job, template: Template, settings: Settings
) -> Admission:
    batch = session.get_one(Batch, job.batch_id, with_for_update=True)
    if batch.state in ("paused", "cancelled", "finished"):
        return _refuse(batch.paused_reason or f"batch_{batch.state}", None)
    running = session.execute(
        select(func.count())
        .select_from(Run)
        .join(Job, Job.id == Run.job_id)
        .where(Job.batch_id == batch.id, Run.state.in_(LIVE_RUN_STATES))
    ).scalar_one()
    if running >= batch.max_concurrent:
        return _refuse("batch_max_concurrent", settings.admission_retry_s)
    estimate = estimate_job_cost(session, job, template, settings)
    if batch.spent_usd + batch.reserved_usd + estimate > batch.budget_usd:
        batch.state = "paused"
        batch.paused_reason = "budget_exhausted"
        return _refuse("budget_exhausted", None)
    batch.reserved_usd += estimate
    return Admission(is_admitted=True, reserved_usd=estimate)


def settle_batch(session: Session, job: Job, actual_cost: Decimal) -> None:
    """Replace the attempt's reservation in its batch by what it actually cost."""
    if job.batch_id is None:
        return
    batch = session.get_one(Batch, job.batch_id, with_for_update=True)
    batch.reserved_usd = max(Decimal(0), batch.reserved_usd - job.reserved_usd)
    batch.spent_usd += actual_cost
    job.reserved_usd = Decimal(0)
