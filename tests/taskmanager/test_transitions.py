"""State changes against a real PostgreSQL: one transaction with its event, compare-and-set."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.models import Job, JobEvent, Run
from taskmanager.states import InvalidTransition, JobState, RunState
from taskmanager.transitions import (
    ConcurrentChange,
    record_event,
    transition_job,
    transition_run,
)
from tests.services import wait_until
from tests.taskmanager.factories import make_job, make_run


def _events(session: Session, job: Job) -> list[JobEvent]:
    return list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    )


def test_transition_writes_state_and_event_together(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        job = make_job(session)
        transition_job(session, job, JobState.STARTING, reason="admitted")
    with sessions() as session:
        stored = session.get_one(Job, job.id)
        assert stored.state == "starting"
        assert stored.started_at is not None
        [event] = _events(session, stored)
        assert (event.kind, event.from_state, event.to_state) == ("state", "queued", "starting")
        assert event.data == {"reason": "admitted"}


def test_forbidden_transition_changes_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        job = make_job(session)
    with sessions() as session:
        job = session.get_one(Job, job.id)
        with pytest.raises(InvalidTransition, match="from 'queued' to 'succeeded'"):
            transition_job(session, job, JobState.SUCCEEDED)
        session.rollback()
        assert session.get_one(Job, job.id).state == "queued"
        assert _events(session, job) == []


def test_rolled_back_transition_leaves_no_event(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        job_id = make_job(session).id
    with sessions() as session:
        transition_job(session, session.get_one(Job, job_id), JobState.CANCELLED)
        session.rollback()
    with sessions() as session:
        job = session.get_one(Job, job_id)
        assert job.state == "queued"
        assert _events(session, job) == []


def test_terminal_transition_sets_finished_at(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        job = make_job(session)
        transition_job(session, job, JobState.CANCELLED)
        assert job.finished_at is not None


def test_losing_a_race_raises_concurrent_change(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        job = make_job(session)
    with sessions() as first, sessions() as second:
        mine = first.get_one(Job, job.id)
        theirs = second.get_one(Job, job.id)
        transition_job(second, theirs, JobState.CANCELLED)
        second.commit()
        with pytest.raises(ConcurrentChange):
            transition_job(first, mine, JobState.STARTING)


def test_run_transition_is_fenced_by_lease_token(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        run = make_run(session, make_job(session))
        session.execute(update(Run).where(Run.id == run.id).values(lease_token=2))
        session.refresh(run)
    with sessions() as session:
        run = session.get_one(Run, run.id)
        with pytest.raises(ConcurrentChange):
            transition_run(session, run, RunState.LAUNCHING, lease_token=1)
        session.rollback()
        run = session.get_one(Run, run.id)
        transition_run(session, run, RunState.LAUNCHING, lease_token=2)
        transition_run(session, run, RunState.RUNNING, lease_token=2)
        session.commit()
        assert run.state == "running"
        assert run.started_at is not None


def test_database_refuses_unknown_state(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        job = make_job(session)
        session.commit()
        with pytest.raises(IntegrityError, match="ck_jobs_state"):
            session.execute(update(Job).where(Job.id == job.id).values(state="exploded"))


def test_idempotency_key_is_unique_per_owner(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        job = make_job(session, idempotency_key="k1")
        session.commit()
        duplicate = Job(
            owner_id=job.owner_id,
            template_id=job.template_id,
            upload_id=job.upload_id,
            idempotency_key="k1",
            max_runtime_s=60,
            cpu=job.cpu,
            memory_gb=job.memory_gb,
        )
        session.add(duplicate)
        with pytest.raises(IntegrityError, match="uq_jobs_owner_id_idempotency_key"):
            session.flush()


def test_job_state_enum_round_trips(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        job = make_job(session)
        assert job.job_state is JobState.QUEUED
        assert not job.job_state.is_terminal


def test_a_jobs_events_commit_in_id_order(sessions: sessionmaker[Session]) -> None:
    """A second writer waits for the first, so no reader resuming after an id skips one."""
    with sessions.begin() as session:
        job_id = make_job(session).id
    first = sessions()
    early = record_event(first, job_id, "progress", {"done": 1})
    later: list[int] = []

    def write_second() -> None:
        with sessions.begin() as second:
            later.append(record_event(second, job_id, "cancel_requested"))

    writer = threading.Thread(target=write_second)
    writer.start()
    try:
        wait_until(lambda: _is_waiting_on_a_lock(sessions), 10, "second writer waits")
        assert later == []
    finally:
        first.commit()
        first.close()
    writer.join(timeout=10)
    assert later[0] > early
    with sessions() as session:
        assert [e.id for e in _events(session, session.get_one(Job, job_id))] == [
            early,
            later[0],
        ]


def _is_waiting_on_a_lock(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        waiting = session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
        return bool(waiting)
