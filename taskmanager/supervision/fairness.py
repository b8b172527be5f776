"""Fair shares of scarce container slots: the next slot goes to whoever runs the fewest.

Admission alone is first come, first served: a user with 200 jobs queued would take
every slot that frees, and a newcomer's one job would wait behind the whole backlog.
So when slots are scarce (no more free than there are fairer claimants), an attempt is
refused if another user's queued job has fewer of its user's containers running (or,
between two jobs of one user, fewer of its batch's), and when an attempt ends the
fairest waiting job is woken at once instead of at its next poll.

Queued batch jobs their own batch could not admit (paused, at its cap) claim nothing.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from taskmanager.models import Job
from taskmanager.queueing import Enqueuer
from taskmanager.settings import Settings

log = structlog.get_logger(__name__)

# Running containers per user and per batch, and each queued job that could take a slot
# (not cancelled; alone, or in an open batch below its cap), with the counts it is ranked
# by: its user's running containers, then its batch's.
_CLAIMANTS = """
    WITH running AS (
        SELECT jobs.owner_id, jobs.batch_id, count(*) AS n
          FROM runs JOIN jobs ON jobs.id = runs.job_id
         WHERE runs.state IN ('pending', 'launching', 'running')
         GROUP BY jobs.owner_id, jobs.batch_id
    ), per_owner AS (
        SELECT owner_id, sum(n) AS n FROM running GROUP BY owner_id
    ), claimants AS (
        SELECT waiting.id, waiting.owner_id, waiting.batch_id, waiting.max_runtime_s,
               waiting.created_at,
               coalesce(per_owner.n, 0) AS owner_running,
               coalesce(per_batch.n, 0) AS batch_running
          FROM jobs AS waiting
          LEFT JOIN per_owner ON per_owner.owner_id = waiting.owner_id
          LEFT JOIN running AS per_batch
                 ON per_batch.owner_id = waiting.owner_id
                AND per_batch.batch_id IS NOT DISTINCT FROM waiting.batch_id
          LEFT JOIN batches ON batches.id = waiting.batch_id
         WHERE waiting.state = 'queued'
           AND NOT waiting.cancel_requested
           AND (waiting.batch_id IS NULL
                OR (batches.state = 'open' AND batches.paused_reason IS NULL
                    AND coalesce(per_batch.n, 0) < batches.max_concurrent))
    )
"""

_FAIRER_OWNERS = text(
    _CLAIMANTS  # noqa: S608 - built from constants, no input
    + """
    SELECT count(*) FROM (
        SELECT DISTINCT claimants.owner_id, claimants.batch_id FROM claimants
         WHERE claimants.id <> :job_id
           AND (claimants.owner_running < :owner_running
                OR (claimants.owner_id = :owner_id
                    AND claimants.batch_id IS DISTINCT FROM :batch_id
                    AND claimants.batch_running < :batch_running))
         LIMIT :enough
    ) AS fairer
    """
)

_OWN_COUNTS = text(
    """
    SELECT count(*) AS owner_running,
           count(*) FILTER (WHERE jobs.batch_id IS NOT DISTINCT FROM :batch_id) AS batch_running
      FROM runs JOIN jobs ON jobs.id = runs.job_id
     WHERE runs.state IN ('pending', 'launching', 'running') AND jobs.owner_id = :owner_id
    """
)

_FAIREST = text(
    _CLAIMANTS  # noqa: S608 - built from constants, no input
    + """
    SELECT DISTINCT ON (claimants.owner_id)
           claimants.id, claimants.batch_id, claimants.max_runtime_s,
           claimants.owner_running, claimants.batch_running, claimants.created_at
      FROM claimants
     ORDER BY claimants.owner_id, claimants.batch_running, claimants.created_at
    """
)


_LIVE_RUNS = text("SELECT count(*) FROM runs WHERE state IN ('pending', 'launching', 'running')")


def scarce_slots(settings: Settings, live_runs: int) -> int | None:
    """Return the free container slots if they are scarce enough to share out, else None.

    Scarce: no more free than a tenth of the cap (at least 4). With more free, no queue
    of claimants is long enough to matter, and the fairness queries (which scan the
    queued jobs) are not worth their cost under the admission lock.
    """
    cap = settings.max_concurrent_containers
    free = cap - live_runs
    return free if free <= max(4, cap // 10) else None


def free_slots_if_scarce(session: Session, settings: Settings) -> int | None:
    """Count the live runs and return ``scarce_slots`` for them."""
    return scarce_slots(settings, int(session.execute(_LIVE_RUNS).scalar_one()))


def is_someone_fairer(session: Session, job: Job, free_slots: int) -> bool:
    """Tell whether the free slots should go to other queued jobs before ``job``.

    True when at least ``free_slots`` users have a queued job with fewer of their
    containers running than ``job``'s user has (or ``job``'s user has a queued job in a
    batch running fewer than ``job``'s batch).
    """
    own = session.execute(_OWN_COUNTS, {"owner_id": job.owner_id, "batch_id": job.batch_id}).one()
    if own.owner_running == 0 or free_slots <= 0:
        return False  # nobody can have fewer than none; no slot to give away
    fairer = session.execute(
        _FAIRER_OWNERS,
        {
            "job_id": job.id,
            "owner_id": job.owner_id,
            "batch_id": job.batch_id,
            "owner_running": own.owner_running,
            "batch_running": own.batch_running,
            "enough": free_slots,  # no need to count further
        },
    ).scalar_one()
    return int(fairer) >= free_slots


def fairest_waiting_jobs(
    session: Session, count: int
) -> list[tuple[uuid.UUID, uuid.UUID | None, int]]:
    """Return up to ``count`` queued jobs to wake for freed slots, fairest first.

    One per user (the user's job in the batch running fewest, oldest first), users
    ranked by how few containers they run: ``(job id, batch id, max_runtime_s)``.
    """
    if count <= 0:
        return []
    rows = sorted(
        session.execute(_FAIREST).all(),
        key=lambda row: (row.owner_running, row.batch_running, row.created_at),
    )
    return [(row.id, row.batch_id, row.max_runtime_s) for row in rows[:count]]


def wake_fairest(enqueuer: Enqueuer, jobs: list[tuple[uuid.UUID, uuid.UUID | None, int]]) -> None:
    """Wake the jobs ``fairest_waiting_jobs`` chose (after their transaction committed)."""
    for job_id, batch_id, max_runtime in jobs:
        try:
            enqueuer.enqueue(job_id, is_batch=batch_id is not None, max_runtime_s=max_runtime)
        except Exception as exc:  # Redis away: the job's own poll, or the reconciler, wakes it
            log.warning("fair-share wake-up failed", job_id=str(job_id), error=str(exc))
