"""Fair shares of scarce slots (issue 17, item 3): the next slot goes to whoever runs the
fewest containers, not to the longest queue."""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import select

from taskmanager.jobs import JobRequest, submit_job
from taskmanager.models import JobEvent
from taskmanager.supervision.fairness import fairest_waiting_jobs
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.taskmanager.factories import make_owner_upload_template


def _user(runtime: Runtime, template: str) -> tuple[uuid.UUID, uuid.UUID]:
    with runtime.sessions.begin() as session:
        return make_owner_upload_template(session, template)


def _submit(runtime: Runtime, user: tuple[uuid.UUID, uuid.UUID], template: str) -> uuid.UUID:
    request = JobRequest(
        owner_id=user[0], template_name=template, upload_id=user[1], params={"fake": {}}
    )
    job, _ = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
    return job.id


def _last_refusal(runtime: Runtime, job_id: uuid.UUID) -> str | None:
    with runtime.sessions() as session:
        data = session.scalars(
            select(JobEvent.data)
            .where(JobEvent.job_id == job_id, JobEvent.kind == "admission")
            .order_by(JobEvent.id.desc())
        ).first()
    return None if data is None else str(data.get("reason"))


def test_the_last_free_slot_goes_to_the_user_running_fewest(runtime: Runtime) -> None:
    capped = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"max_concurrent_containers": 3})
    )
    manager = Supervisor(capped, "manager")
    heavy, newcomer = _user(runtime, "frame"), _user(runtime, "frame2")
    backlog = [_submit(runtime, heavy, "frame") for _ in range(5)]
    # The heavy user takes two of three slots (runs created, not launched: live all the same).
    assert manager._prepare(backlog[0]) is not None
    assert manager._prepare(backlog[1]) is not None
    late = _submit(runtime, newcomer, "frame2")
    # One slot left and a user running none waits: the heavy user's next job does not take it.
    assert manager._prepare(backlog[2]) is None
    assert _last_refusal(runtime, backlog[2]) == "fair_share"
    with runtime.sessions() as session:
        [(fairest, _, _)] = fairest_waiting_jobs(session, 1)
    assert fairest == late
    assert manager._prepare(late) is not None


def test_slots_that_are_not_scarce_are_not_held_back(runtime: Runtime) -> None:
    roomy = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"max_concurrent_containers": 10})
    )
    manager = Supervisor(roomy, "manager")
    heavy, newcomer = _user(runtime, "frame"), _user(runtime, "frame2")
    backlog = [_submit(runtime, heavy, "frame") for _ in range(3)]
    _submit(runtime, newcomer, "frame2")
    for job_id in backlog:
        assert manager._prepare(job_id) is not None  # plenty of slots for both users


def test_a_user_alone_may_take_every_slot(runtime: Runtime) -> None:
    """Found by the benchmark: a user's own queued jobs counted as fairer claimants, so a
    user alone could never take the last slot."""
    capped = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"max_concurrent_containers": 3})
    )
    manager = Supervisor(capped, "manager")
    alone = _user(runtime, "frame")
    backlog = [_submit(runtime, alone, "frame") for _ in range(5)]
    assert [manager._prepare(job_id) is not None for job_id in backlog[:3]] == [True] * 3
    assert manager._prepare(backlog[3]) is None
    assert _last_refusal(runtime, backlog[3]) == "max_concurrent_containers"
