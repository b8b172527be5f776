"""Change a job's or a run's state together with its event, in the caller's transaction.

Each change is a compare-and-set (``WHERE state = :expected``), so two processes racing
on one job cannot both win: the loser gets ``ConcurrentChange`` and its transaction is
rolled back by the caller.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from taskmanager.models import Job, JobEvent, Run
from taskmanager.states import JobState, RunState, check_job_transition, check_run_transition


class ConcurrentChange(Exception):
    """Someone else changed the row first; re-read it and decide again."""


def record_event(
    session: Session,
    job_id: uuid.UUID,
    kind: str,
    data: dict[str, Any] | None = None,
    *,
    run_id: uuid.UUID | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    is_new_job: bool = False,
) -> JobEvent:
    """Append one event to the job's history (flushed, so its id is known).

    The job's row is locked first, so a job's events commit in the order of their ids
    and a reader resuming "after id N" (Server-Sent Events) can never skip one that
    commits late. Holding the lock already (a transition did) costs nothing more; a job
    inserted by this very transaction (``is_new_job``) is invisible to other writers.
    """
    if not is_new_job:
        # FOR NO KEY UPDATE: serialises event writers without blocking foreign-key checks.
        session.execute(select(Job.id).where(Job.id == job_id).with_for_update(key_share=True))
    # An INSERT ... RETURNING, not a unit-of-work flush: the same row, half the work.
    return session.scalars(
        insert(JobEvent)
        .values(
            job_id=job_id,
            run_id=run_id,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            data=data or {},
        )
        .returning(JobEvent)
    ).one()


def transition_job(
    session: Session,
    job: Job,
    target: JobState,
    *,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    run_id: uuid.UUID | None = None,
    **changes: Any,
) -> JobEvent:
    """Move ``job`` to ``target``, apply ``changes`` and write the state event.

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
    )


def transition_run(
    session: Session,
    run: Run,
    target: RunState,
    *,
    lease_token: int | None = None,
    data: dict[str, Any] | None = None,
    **changes: Any,
) -> JobEvent:
    """Move ``run`` to ``target`` under its lease and write the event.

    With ``lease_token`` the write only lands if the caller still holds the lease
    (the fencing check); otherwise ``ConcurrentChange`` is raised.
    """
    current = RunState(run.state)
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
    return record_event(
        session,
        run.job_id,
        "run_state",
        {"attempt": run.attempt, **(data or {})},
        run_id=run.id,
        from_state=current.value,
        to_state=target.value,
    )
