"""What only ACI does to a job: Spot evictions, image-pull failures, capacity refusals."""

from __future__ import annotations

import pytest

from taskmanager.jobs import cancel_job, job_events
from taskmanager.models import Job
from taskmanager.supervision.runtime import Runtime
from tests.armemulator.emulator import ArmEmulator
from tests.services import wait_until
from tests.taskmanager.conftest import TERMINAL, SubmitFake, WorkerPool, runs_of, wait_for_job


@pytest.fixture
def container_backend() -> str:
    return "aci"


def test_evictions_are_retried_apart_from_crashes_then_fall_back_to_regular(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake, arm_emulator: ArmEmulator
) -> None:
    assert runtime.settings.spot_max_evictions == 2
    workers.start(1)
    job = submit_fake({"seconds": 30, "steps": 300}, is_spot=True, max_attempts=1)
    for attempt in (1, 2):

        def is_running(a: int = attempt) -> bool:
            return any(r.attempt == a and r.state == "running" for r in runs_of(runtime, job.id))

        wait_until(is_running, 30, f"attempt {attempt} running")
        arm_emulator.evict(runs_of(runtime, job.id)[-1].container_name)
    # Third attempt: Spot has been evicted twice, so it runs at Regular priority.
    wait_until(lambda: len(runs_of(runtime, job.id)) == 3, 30, "third attempt")
    runs = runs_of(runtime, job.id)
    assert [(r.is_spot, r.failure_kind) for r in runs[:2]] == [(True, "evicted"), (True, "evicted")]
    assert not runs[2].is_spot
    with runtime.sessions() as session:
        stored = session.get_one(Job, job.id)
        assert stored.evictions == 2
        assert stored.max_attempts == 3  # evictions did not use up the one real attempt
    cancel_job(runtime.sessions, job.id)
    assert wait_for_job(runtime, job.id, TERMINAL).state == "cancelled"


def test_image_pull_failure_is_permanent(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake, arm_emulator: ArmEmulator
) -> None:
    arm_emulator.fail_image_pull("fake")
    workers.start(1)
    job = submit_fake({"seconds": 1})
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert (done.state, done.error_code, done.attempt) == ("failed", "image_pull", 1)
    assert "image" in (done.error_message or "")


def test_quota_refusal_is_retried_without_using_an_attempt(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake, arm_emulator: ArmEmulator
) -> None:
    arm_emulator.exceed_quota(count=1)
    workers.start(1)
    job = submit_fake({"seconds": 0.3}, max_attempts=1)
    done = wait_for_job(runtime, job.id, TERMINAL, timeout_s=60)
    assert done.state == "succeeded"
    runs = runs_of(runtime, job.id)
    assert [r.failure_kind for r in runs] == ["capacity", None]
    kinds = [
        e.data.get("reason") for e in job_events(runtime.sessions, job.id) if e.kind == "state"
    ]
    assert "capacity" in kinds
