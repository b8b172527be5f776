"""Change a job's or a run's state together with its event, in the caller's transaction.

Each change is a compare-and-set (``WHERE state = :expected``), so two processes racing
on one job cannot both win: the loser gets ``ConcurrentChange`` and its transaction is
rolled back by the caller.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from taskmanager.models import Job, JobEvent, Run
from taskmanager.states import JobState, RunState, check_job_transition, check_run_transition


class ConcurrentChange(Exception):
    """Someone else changed the row first; re-read it and decide again."""


# The statements every attempt runs, built once: building one per call (coercing its
# parts, then hashing it into a cache key) cost more Python time than executing it.
_EVENTS = cast(Table, JobEvent.__table__)
# FOR NO KEY UPDATE: serialises event writers without blocking foreign-key checks.
_LOCK_FOR_EVENT = (
    select(Job.id).where(Job.id == bindparam("job_id")).with_for_update(key_share=True)
)
# A Core INSERT on the table: nobody reads the event back as an object, and the ORM's
# bulk-insert machinery cost more than the statement itself.
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_LOCK_JOB_AND_RUN = (
    select(Job, Run, func.now())
    .join(Run, Run.job_id == Job.id)
    .where(Job.id == bindparam("job_id"), Run.id == bindparam("run_id"))
    .with_for_update(of=Job)
)


def lock_job_and_run(
    session: Session, job_id: uuid.UUID, run_id: uuid.UUID
) -> tuple[Job, Run, datetime]:
    """Lock the job's row (first, as every writer of a job does) and read it with its run.

    One round trip for the job, the run and the database's clock.
    """
    job, run, db_now = session.execute(
        _LOCK_JOB_AND_RUN, {"job_id": job_id, "run_id": run_id}
    ).one()
    return job, run, db_now


def record_event(
    session: Session,
    job_id: uuid.UUID,
    kind: str,
    data: dict[str, Any] | None = None,
    *,
    run_id: uuid.UUID | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    holds_job_lock: bool = False,
) -> int:
    """Append one event to the job's history; return its id.

    The job's row is locked first, so a job's events commit in the order of their ids
    and a reader resuming "after id N" (Server-Sent Events) can never skip one that
    commits late. A caller whose transaction already holds that lock (it locked or
    updated the job row) or inserted the job itself passes ``holds_job_lock`` and saves
    the round trip.
    """
    # Pending ORM changes first (a new run the event names), as an ORM statement would.
    session.flush()
    if not holds_job_lock:
        session.execute(_LOCK_FOR_EVENT, {"job_id": job_id})
    return int(
        session.execute(
            _INSERT_EVENT,
            {
                "job_id": job_id,
                "run_id": run_id,
                "kind": kind,
                "from_state": from_state,
                "to_state": to_state,
                "data": data or {},
            },
        ).scalar_one()
    )


def transition_job(
    session: Session,
    job: Job,
    target: JobState,
    *,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    run_id: uuid.UUID | None = None,
    **changes: Any,
) -> int:
    """Move ``job`` to ``target``, apply ``changes``, write the state event; return its id.

    Raises ``InvalidTransition`` if the state machine forbids the move and
    ``ConcurrentChange`` if the row's state is no longer the one ``job`` holds.
    """
    current = JobState(job.state)
    check_job_transition(current, target)
    values: dict[str, Any] = {"state": target.value, "updated_at": func.now(), **changes}
    if target.is_terminal:
        values.setdefault("finished_at", func.now())
    elif target is JobState.STARTING and job.started_at is None:
        values.setdefault("started_at", func.now())
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == current.value)
        .values(**values)
        .returning(Job)
        # RETURNING the entity refreshes ``job`` in place: no second SELECT needed.
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if result.one_or_none() is None:
        raise ConcurrentChange(f"job {job.id} is no longer {current.value}")
    event_data = dict(data or {})
    if reason is not None:
        event_data["reason"] = reason
    return record_event(
        session,
        job.id,
        "state",
        event_data,
        run_id=run_id,
        from_state=current.value,
        to_state=target.value,
        holds_job_lock=True,  # the UPDATE above locked the job's row
    )


def transition_run(
    session: Session,
    run: Run,
    target: RunState,
    *,
    lease_token: int | None = None,
    data: dict[str, Any] | None = None,
    holds_job_lock: bool = False,
    **changes: Any,
) -> int:
    """Move ``run`` to ``target`` under its lease, write the event; return its id.

    With ``lease_token`` the write only lands if the caller still holds the lease
    (the fencing check); otherwise ``ConcurrentChange`` is raised. ``holds_job_lock``
    as for ``record_event``.
    """
    current = RunState(run.state)
    if lease_token is not None and run.lease_token != lease_token:
        # Fencing first: a manager that lost the lease may hold a stale view of the run
        # (one its adopter has since finished); its claim is not a transition at all.
        raise ConcurrentChange(f"run {run.id} is under another lease")
    check_run_transition(current, target)
    values: dict[str, Any] = {"state": target.value, **changes}
    if target is RunState.RUNNING:
        values.setdefault("started_at", func.now())
    if target.is_terminal:
        values.setdefault("finished_at", func.now())
    statement = update(Run).where(Run.id == run.id, Run.state == current.value)
    if lease_token is not None:
        statement = statement.where(Run.lease_token == lease_token)
    result = session.execute(
        statement.values(**values)
        .returning(Run)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if result.one_or_none() is None:
        raise ConcurrentChange(f"run {run.id} changed state or lease under us")
    return record_run_event(session, run, current, target, data, holds_job_lock=holds_job_lock)


def record_run_event(
    session: Session,
    run: Run,
    from_state: RunState,
    to_state: RunState,
    data: dict[str, Any] | None = None,
    *,
    holds_job_lock: bool = False,
) -> int:
    """Write the event of ``run`` moving between two states; return its id.

    ``transition_run`` writes it with the change; a run inserted already past
    ``pending`` writes it alone. ``holds_job_lock`` as for ``record_event``.
    """
    return record_event(
        session,
        run.job_id,
        "run_state",
        {"attempt": run.attempt, **(data or {})},
        run_id=run.id,
        from_state=from_state.value,
        to_state=to_state.value,
        holds_job_lock=holds_job_lock,
    )
