"""The job service: validation, idempotency, cancel, retry, events, lost enqueues."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from taskmanager.errors import InvalidRequest
from taskmanager.jobs import (
    JobNotFound,
    JobRequest,
    JobStateConflict,
    cancel_job,
    get_job,
    job_events,
    list_jobs,
    retry_job,
    submit_job,
)
from taskmanager.models import Job
from taskmanager.states import JobState
from taskmanager.supervision.reconciler import reconcile
from taskmanager.supervision.runtime import Runtime
from taskmanager.transitions import transition_job

Owner = tuple[uuid.UUID, uuid.UUID, str]


def _request(owner: Owner, **fields: object) -> JobRequest:
    owner_id, upload_id, template = owner
    return JobRequest(owner_id=owner_id, template_name=template, upload_id=upload_id, **fields)  # type: ignore[arg-type]


class FailingEnqueuer:
    """An enqueuer whose Redis is down."""

    def enqueue(self, job_id: uuid.UUID, **_: object) -> None:
        raise ConnectionError("redis down")

    def is_queued(
        self, job_id: uuid.UUID, *, is_batch: bool, due_by: datetime | None = None
    ) -> bool:
        return False


def test_idempotency_key_returns_the_same_job(runtime: Runtime, owner_and_upload: Owner) -> None:
    request = _request(owner_and_upload, idempotency_key="k-1")
    first, created = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
    again, created_again = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
    assert (created, created_again) == (True, False)
    assert again.id == first.id


def test_concurrent_submits_with_one_key_make_one_job(
    runtime: Runtime, owner_and_upload: Owner
) -> None:
    request = _request(owner_and_upload, idempotency_key="race")
    ids: list[uuid.UUID] = []
    barrier = threading.Barrier(4)

    def submit() -> None:
        barrier.wait()
        job, _ = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
        ids.append(job.id)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert len(list_jobs(runtime.sessions, owner_id=owner_and_upload[0])) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cpu": Decimal(64)}, "cpu"),
        ({"memory_gb": Decimal("0.1")}, "memory_gb"),
        ({"max_runtime_s": 0}, "max_runtime_s"),
        ({"max_attempts": 99}, "max_attempts"),
        ({"template_name": "missing"}, "template"),
        ({"upload_id": uuid.uuid4()}, "upload_id"),
        ({"crop": (600, 0, 100, 100)}, "crop"),
        ({"crop": (0, 0, 0, 10)}, "crop"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_bad_requests_name_the_field(
    runtime: Runtime, owner_and_upload: Owner, fields: dict[str, object], field: str
) -> None:
    owner_id, upload_id, template = owner_and_upload
    values: dict[str, object] = {
        "owner_id": owner_id,
        "template_name": template,
        "upload_id": upload_id,
        **fields,
    }
    with pytest.raises(InvalidRequest) as refused:
        submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, JobRequest(**values))  # type: ignore[arg-type]
    assert refused.value.field == field
    assert list_jobs(runtime.sessions) == []


def test_failed_enqueue_leaves_the_job_queued_for_the_reconciler(
    runtime: Runtime, owner_and_upload: Owner
) -> None:
    job, created = submit_job(
        runtime.sessions, FailingEnqueuer(), runtime.settings, _request(owner_and_upload)
    )
    assert created
    assert get_job(runtime.sessions, job.id).state == "queued"
    assert not runtime.enqueuer.is_queued(job.id, is_batch=False)
    report = reconcile(runtime)
    assert report.requeued == [job.id]
    assert runtime.enqueuer.is_queued(job.id, is_batch=False)
    assert reconcile(runtime).requeued == []  # once queued, left alone


def test_cancel_retry_and_events(runtime: Runtime, owner_and_upload: Owner) -> None:
    job, _ = submit_job(
        runtime.sessions, runtime.enqueuer, runtime.settings, _request(owner_and_upload)
    )
    cancelled = cancel_job(runtime.sessions, job.id)
    assert cancelled.state == "cancelled"
    assert cancel_job(runtime.sessions, job.id).state == "cancelled"  # idempotent
    retried = retry_job(runtime.sessions, runtime.enqueuer, job.id)
    assert retried.state == "queued"
    assert not retried.cancel_requested
    events = job_events(runtime.sessions, job.id)
    assert [e.to_state for e in events] == ["queued", "cancelled", "queued"]
    assert [e.id for e in job_events(runtime.sessions, job.id, after=events[0].id)] == [
        events[1].id,
        events[2].id,
    ]


def test_a_success_cannot_be_retried_and_strangers_see_nothing(
    runtime: Runtime, owner_and_upload: Owner
) -> None:
    job, _ = submit_job(
        runtime.sessions, runtime.enqueuer, runtime.settings, _request(owner_and_upload)
    )
    with runtime.sessions.begin() as session:
        stored = session.get_one(Job, job.id)
        for state in (JobState.STARTING, JobState.SUCCEEDED):
            transition_job(session, stored, state)
    with pytest.raises(JobStateConflict):
        retry_job(runtime.sessions, runtime.enqueuer, job.id)
    with pytest.raises(JobNotFound):
        get_job(runtime.sessions, job.id, owner_id=uuid.uuid4())
    with pytest.raises(JobNotFound):
        cancel_job(runtime.sessions, job.id, owner_id=uuid.uuid4())
