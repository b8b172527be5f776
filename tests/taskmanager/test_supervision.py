"""Supervision end to end: real Postgres, real Redis, real worker processes and containers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from taskmanager.jobs import cancel_job, get_job, job_events
from taskmanager.models import Run
from taskmanager.settings import Settings
from taskmanager.states import JobState
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.services import wait_until
from tests.taskmanager.conftest import (
    TERMINAL,
    SubmitFake,
    WorkerPool,
    runs_of,
    wait_for_job,
)


@pytest.fixture(params=["local", "aci"])
def container_backend(request: pytest.FixtureRequest) -> str:
    """Run every behaviour here on both backends (aci through the ARM emulator)."""
    return str(request.param)


def test_happy_path(runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 0.5, "steps": 5})
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "succeeded"
    assert done.progress == 1.0
    assert done.actual_cost_usd > 0
    with runtime.sessions() as session:
        [run] = session.scalars(select(Run).where(Run.job_id == job.id))
        assert run.state == "succeeded"
        assert run.exit_code == 0
        assert run.log_key is not None
    assert runtime.storage.exists(run.log_key)
    wait_until(lambda: runtime.backend.list_ours() == [], 10, "the container removed")


def test_transient_failure_is_retried_then_succeeds(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 0.2, "exit_codes": [3, 0]})
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "succeeded"
    assert done.attempt == 2
    # Outputs are per attempt: a retry never writes over a slow-to-die predecessor's.
    assert done.output_key == f"outputs/{job.id}/2/video.mp4"
    runs = runs_of(runtime, job.id)
    assert [(r.state, r.exit_code, r.failure_kind) for r in runs] == [
        ("failed", 3, "storage"),
        ("succeeded", 0, None),
    ]
    assert "retry_wait" in [e.to_state for e in job_events(runtime.sessions, job.id)]


def test_bad_input_fails_at_once_without_retry(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 0.1, "exit_code": 2})
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert (done.state, done.error_code, done.attempt) == ("failed", "bad_input", 1)
    assert done.error_message == "fake failure"
    assert len(runs_of(runtime, job.id)) == 1


def test_retries_stop_at_max_attempts(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 0.1, "exit_code": 1}, max_attempts=2)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert (done.state, done.error_code, done.attempt) == ("failed", "crash", 2)


def test_cancel_while_queued_never_starts_a_container(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    job = submit_fake({"seconds": 5})
    cancel_job(runtime.sessions, job.id)
    workers.start(1)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "cancelled"
    assert runs_of(runtime, job.id) == []


def test_cancel_while_starting_launches_nothing(runtime: Runtime, submit_fake: SubmitFake) -> None:
    job = submit_fake({"seconds": 5})
    supervisor = Supervisor(runtime, "test-manager")
    attempt = supervisor._prepare(job.id)  # admitted: the run exists, nothing launched yet
    assert attempt is not None
    assert wait_for_job(runtime, job.id, {JobState.STARTING}).state == "starting"
    cancel_job(runtime.sessions, job.id)
    supervisor.supervise(job.id)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "cancelled"
    [run] = runs_of(runtime, job.id)
    assert run.state == "cancelled"
    assert run.billed_seconds == 0  # nothing ran, nothing is billed
    wait_until(lambda: runtime.backend.list_ours() == [], 10, "the container removed")


def test_cancel_while_running_stops_and_removes_the_container(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake, container_backend: str
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 30})
    wait_for_job(runtime, job.id, {JobState.RUNNING})
    cancel_job(runtime.sessions, job.id)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "cancelled"
    [run] = runs_of(runtime, job.id)
    assert run.state == "cancelled"
    if container_backend == "local":
        assert run.exit_code == 128 + 15
    wait_until(lambda: runtime.backend.list_ours() == [], 10, "the container removed")


def test_container_ignoring_sigterm_is_killed(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 30, "steps": 300, "ignore_sigterm": True})
    # Progress comes after the program has set SIGTERM aside.
    wait_until(lambda: get_job(runtime.sessions, job.id).progress > 0, 10, "progress")
    cancel_job(runtime.sessions, job.id)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "cancelled"
    [run] = runs_of(runtime, job.id)
    assert run.exit_code == 128 + 9
    assert run.failure_kind == "cancelled"
    wait_until(lambda: runtime.backend.list_ours() == [], 10, "the container removed")


def test_deadline_kills_the_container(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 30}, max_runtime_s=1)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert (done.state, done.error_code) == ("timed_out", "deadline")
    [run] = runs_of(runtime, job.id)
    assert run.state == "timed_out"
    assert run.billed_seconds is not None
    assert 1.0 <= run.billed_seconds < 30
    wait_until(lambda: runtime.backend.list_ours() == [], 10, "the container removed")


def test_stalled_container_is_killed_and_retried(
    runtime: Runtime, manager_settings: Settings, tmp_path: Path, submit_fake: SubmitFake
) -> None:
    pool = WorkerPool(manager_settings.model_copy(update={"stall_timeout_s": 1.0}), tmp_path)
    try:
        pool.start(1)
        job = submit_fake({"hang": True}, max_attempts=2)
        done = wait_for_job(runtime, job.id, TERMINAL)
    finally:
        pool.stop()
    assert (done.state, done.error_code, done.attempt) == ("failed", "stalled", 2)
    assert [r.state for r in runs_of(runtime, job.id)] == ["timed_out", "timed_out"]
    wait_until(lambda: runtime.backend.list_ours() == [], 10, "the container removed")
