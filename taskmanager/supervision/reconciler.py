"""The reconciler: close every gap Postgres can see that no manager is closing.

- a live run whose lease is stale (its manager died) → wake a manager, which adopts it;
- a queued job, or a retry whose backoff is over, with no queue entry (Redis flushed,
  enqueue failed after commit) → enqueue it again;
- a container of ours with no live run (leaked) → delete it, recording what it cost;
  runs whose container vanished are marked lost by the manager that adopts them.

It runs in the ``clipyard worker`` parent process on a timer, not as a TaskTiger task:
the thing that repairs Redis must not depend on Redis to be scheduled. A session-level
advisory lock makes one reconciler run at a time across all machines.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from taskmanager.backends.base import APP_TAG, BackendError, ContainerStatus
from taskmanager.batches.ledger import settle_batch, waiting_batch_jobs
from taskmanager.cost import PriceTable, container_cost
from taskmanager.models import Batch, Job, JobEvent, Run
from taskmanager.states import LIVE_RUN_STATES, BatchState, JobState
from taskmanager.supervision.liveness import OrphanedRun, wake_adopter
from taskmanager.supervision.runtime import Runtime
from taskmanager.transitions import record_event

log = structlog.get_logger(__name__)

RECONCILE_LOCK_KEY = 0x636C7972  # "clyr"


@dataclass
class ReconcileReport:
    """What one pass did (for logs, tests and the operations page)."""

    adopted: list[uuid.UUID] = field(default_factory=list)
    requeued: list[uuid.UUID] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)
    is_skipped: bool = False
    # What this pass could not do (a failed cloud read, a failed step): the next tries again.
    failures: list[str] = field(default_factory=list)


def reconcile(runtime: Runtime) -> ReconcileReport:
    """Run one reconciliation pass (or skip it if another reconciler holds the lock)."""
    report = ReconcileReport()
    with runtime.engine.connect() as connection:
        locked = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": RECONCILE_LOCK_KEY}
        ).scalar()
        if not locked:
            report.is_skipped = True
            return report
        try:
            # Each step on its own: a throttled cloud read must not stop the re-enqueueing.
            for step in (_wake_stale_runs, _requeue_lost_wakeups, _remove_leaked_containers):
                try:
                    step(runtime, report)
                except Exception as exc:
                    log.exception("reconcile step failed", step=step.__name__)
                    report.failures.append(f"{step.__name__.strip('_')}: {exc}")
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": RECONCILE_LOCK_KEY})
            connection.commit()
    if report.adopted or report.requeued or report.removed_containers or report.failures:
        log.info(
            "reconciled",
            adopted=len(report.adopted),
            requeued=len(report.requeued),
            removed_containers=len(report.removed_containers),
            failures=len(report.failures),
        )
    return report


def run_reconcile_pass(runtime: Runtime) -> ReconcileReport | None:
    """Run one pass; log a failure (the next pass tries again) instead of raising it."""
    try:
        return reconcile(runtime)
    except Exception:
        log.exception("reconcile failed")
        return None


def reconcile_forever(runtime: Runtime, stop: threading.Event) -> None:
    """Run a pass every ``reconcile_interval_s`` until ``stop`` is set.

    What ``clipyard worker`` runs, and what the tests run: a failed pass never ends it.
    """
    while not stop.wait(runtime.settings.reconcile_interval_s):
        run_reconcile_pass(runtime)


def _wake_stale_runs(runtime: Runtime, report: ReconcileReport) -> None:
    """The slow backstop of ``liveness.py``: wake an adopter for every stale lease."""
    ttl = text(f"interval '{float(runtime.settings.lease_ttl_s)} seconds'")
    with runtime.sessions.begin() as session:
        rows = session.execute(
            select(Run.id, Run.job_id, Run.lease_token, Job.batch_id, Job.max_runtime_s)
            .join(Job, Job.id == Run.job_id)
            .where(
                Run.state.in_(LIVE_RUN_STATES),
                func.coalesce(Run.heartbeat_at, Run.created_at) < func.now() - ttl,
            )
        ).all()
        for row in rows:
            wake_adopter(runtime, session, OrphanedRun(*row), "stale_lease")
            report.adopted.append(row.job_id)


def _requeue_lost_wakeups(runtime: Runtime, report: ReconcileReport) -> None:
    with runtime.sessions.begin() as session:
        rows: list[tuple[uuid.UUID, uuid.UUID | None, int, datetime | None]] = [
            (job_id, batch_id, max_runtime, due_at)
            for job_id, batch_id, max_runtime, due_at in session.execute(
                select(Job.id, Job.batch_id, Job.max_runtime_s, Job.next_attempt_at).where(
                    # A batch's queued jobs wait for a free slot, not a wake-up of their
                    # own: they are handled per batch below. Due retries re-enter admission.
                    ((Job.state == JobState.QUEUED) & Job.batch_id.is_(None))
                    | ((Job.state == JobState.RETRY_WAIT) & (Job.next_attempt_at <= func.now()))
                )
            )
        ]
        open_batches = session.scalars(
            select(Batch.id).where(
                Batch.state == BatchState.OPEN,
                Batch.paused_reason.is_(None),  # not waiting for running jobs' money
                select(Job.id)
                .where(Job.batch_id == Batch.id, Job.state == JobState.QUEUED)
                .exists(),
            )
        ).all()
        for open_batch in open_batches:
            # The oldest queued jobs for which the batch has a free slot: with a slot
            # free when the reconciler looks, their wake-up may have been lost.
            rows += [
                (job_id, open_batch, max_runtime, None)
                for job_id, max_runtime in waiting_batch_jobs(session, open_batch)
            ]
        for job_id, batch_id, max_runtime, due_at in rows:
            is_batch = batch_id is not None
            # An entry counts only if it will run by the time the job is due: not one in
            # TaskTiger's error set, nor one scheduled later (see ``is_queued``).
            if runtime.enqueuer.is_queued(job_id, is_batch=is_batch, due_by=due_at):
                continue
            runtime.enqueuer.enqueue(job_id, is_batch=is_batch, max_runtime_s=max_runtime)
            record_event(session, job_id, "requeued", {"reason": "no queue entry"})
            report.requeued.append(job_id)
            log.info("queue entry missing: requeued", job_id=str(job_id))


def _remove_leaked_containers(runtime: Runtime, report: ReconcileReport) -> None:
    prices = PriceTable.from_settings(runtime.settings)
    for container in runtime.backend.list_ours():
        if not is_this_deployments(container.tags, runtime.settings.deployment_id):
            continue
        try:
            with runtime.sessions.begin() as session:
                run = session.scalars(
                    select(Run).where(Run.container_name == container.name)
                ).first()
                if run is not None and run.state in LIVE_RUN_STATES:
                    continue  # a live run's container, never touched here
                if run is not None and _is_being_removed(session, run, runtime):
                    continue  # its finisher removes it right after committing the end
                # Booked and committed before the removal: a crash in between books
                # nothing twice (the next pass books from where this one stopped), and
                # no row stays locked while the control plane deletes.
                _charge_leak(session, run, container.status, prices)
            runtime.backend.remove(container.name)
            report.removed_containers.append(container.name)
            log.info("leaked container removed", container=container.name)
        except BackendError as exc:
            # One container the control plane would not delete: the rest still get done.
            log.warning("leaked container not removed", container=container.name, error=str(exc))
            report.failures.append(f"remove {container.name}: {exc}")


def _is_being_removed(session: Session, run: Run, runtime: Runtime) -> bool:
    """Tell whether the run ended so recently that its manager is still removing it.

    Finishing commits the run's end, then removes the container: a listing taken in
    between would call a container that is already being removed "leaked" (a second
    delete, a spurious event). A run that ended within one reconcile interval is left
    to its finisher; if that removal failed, the next pass takes the container.
    """
    if run.finished_at is None:
        return False
    db_now = session.execute(select(func.now())).scalar_one()
    return (db_now - run.finished_at).total_seconds() < runtime.settings.reconcile_interval_s


def is_this_deployments(tags: dict[str, str], deployment_id: str) -> bool:
    """Tell whether a container's tags say this deployment made it.

    Containers from before the tag existed count as the default deployment's.
    """
    is_ours = tags.get("app", APP_TAG) == APP_TAG
    return is_ours and tags.get("deployment", "default") == deployment_id


def _charge_leak(
    session: Session, run: Run | None, status: ContainerStatus, prices: PriceTable
) -> None:
    """Book what a leaked container ran beyond its run's bill, to its job and batch.

    A run is billed up to its own end; a container that ran on after it (its removal
    failed, or it was launched again) ran unbilled until now, when the janitor removes
    it. Every container-second reaches the job's cost and the batch's spend.
    """
    if run is None:
        return  # no run of ours: nothing to book it to (the removal is logged)
    db_now = session.execute(select(func.now())).scalar_one()
    start = status.started_at
    billed_until = [run.finished_at] if run.cost_usd is not None else []
    billed_until += _leak_booked_until(session, run)
    if start is not None and billed_until:
        start = max(start, *(when for when in billed_until if when is not None))
    end = status.finished_at or db_now
    seconds = max(0.0, (end - start).total_seconds()) if start is not None else 0.0
    cost = container_cost(prices, seconds, run.cpu, run.memory_gb, is_spot=run.is_spot)
    if cost > 0:
        job = session.get_one(Job, run.job_id, with_for_update=True)
        job.actual_cost_usd += cost
        run.cost_usd = (run.cost_usd or Decimal(0)) + cost
        if job.batch_id is not None:
            settle_batch(session, job.batch_id, Decimal(0), cost)
    record_event(
        session,
        run.job_id,
        "leaked_container_removed",
        {
            "container": run.container_name,
            "cost_usd": str(cost),
            "seconds": round(seconds, 3),
            "booked_until": end.isoformat(),
        },
        run_id=run.id,
    )


def _leak_booked_until(session: Session, run: Run) -> list[datetime]:
    """Return where an earlier pass's booking of this run's leaked container ended."""
    data = session.scalars(
        select(JobEvent.data)
        .where(JobEvent.run_id == run.id, JobEvent.kind == "leaked_container_removed")
        .order_by(JobEvent.id.desc())
        .limit(1)
    ).first()
    until = (data or {}).get("booked_until")
    return [datetime.fromisoformat(until)] if until else []
