"""Adoption under a throttled control plane: a failed read is never a verdict.

Regression for issue 15, item 1: an adopter whose first status read got a 429 (long
Retry-After) recorded the healthy run ``failed/capacity``, billed it $0, removed the
running container and launched attempt 2.
"""

from __future__ import annotations

import dataclasses
import threading

from sqlalchemy import func, update

from taskmanager.backends.base import ContainerState
from taskmanager.jobs import cancel_job, job_events
from taskmanager.models import Run
from taskmanager.states import JobState
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.taskmanager.conftest import TERMINAL, SubmitFake, runs_of, wait_for_job
from tests.taskmanager.faults import (
    ExitsBeforeStop,
    FaultyBackend,
    SlowStartBackend,
    SlowStop,
    die_after_launch,
)


def test_a_throttled_first_read_does_not_fail_an_adopted_run(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    job = submit_fake({"seconds": 2, "steps": 4})
    die_after_launch(runtime, job.id)
    throttled = FaultyBackend(runtime.backend)
    throttled.fail_next("status", 3, retry_after_s=30)
    adopter = dataclasses.replace(runtime, backend=throttled)
    Supervisor(adopter, "adopter").supervise(job.id)

    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == JobState.SUCCEEDED
    [run] = runs_of(runtime, job.id)  # no second attempt
    assert run.failure_kind is None
    assert run.billed_seconds is not None
    assert run.billed_seconds > 0
    assert throttled.calls["remove"] == 1  # only once it had finished
    kinds = [event.kind for event in job_events(runtime.sessions, job.id)]
    assert "adopted" in kinds


def test_a_slow_start_is_not_a_stall(runtime: Runtime, submit_fake: SubmitFake) -> None:
    """Regression for issue 15, item 3: an image pull longer than the stall timeout."""
    settings = runtime.settings.model_copy(update={"stall_timeout_s": 1.0})
    slow = SlowStartBackend(runtime.backend, start_delay_s=2.5)
    manager = dataclasses.replace(runtime, settings=settings, backend=slow)
    job = submit_fake({"seconds": 0.5, "steps": 2})
    Supervisor(manager, "manager").supervise(job.id)

    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == JobState.SUCCEEDED
    [run] = runs_of(runtime, job.id)
    assert run.failure_kind is None


def test_a_creator_that_wakes_after_the_adopter_finished_launches_nothing(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    """Regression for issue 15, item 5: a paused creator ran the job a second time."""
    job = submit_fake({"seconds": 0.5, "steps": 2})
    paused_at = runtime.clock()
    creator = Supervisor(runtime, "creator")
    prepared = creator._prepare(job.id)  # committed: the run and its lease exist
    assert prepared is not None
    # The creator is paused past its TTL: another manager adopts and finishes the attempt.
    with runtime.sessions.begin() as session:
        session.execute(
            update(Run)
            .where(Run.job_id == job.id)
            .values(heartbeat_at=func.now() - func.make_interval(0, 0, 0, 0, 1))
        )
    Supervisor(runtime, "adopter").supervise(job.id)
    assert wait_for_job(runtime, job.id, TERMINAL).state == JobState.SUCCEEDED
    name = prepared.ref.container_name
    assert runtime.backend.status(name).state is ContainerState.NOT_FOUND  # removed

    # The creator resumes where it stopped, its clock now well past the lease's TTL.
    late = runtime.settings.lease_ttl_s * 10
    resumed = dataclasses.replace(runtime, clock=lambda: paused_at + late)
    Supervisor(resumed, "creator").drive(prepared)
    assert runtime.backend.status(name).state is ContainerState.NOT_FOUND
    assert len(runs_of(runtime, job.id)) == 1
    assert wait_for_job(runtime, job.id, TERMINAL).state == JobState.SUCCEEDED


def test_a_container_that_exits_0_as_it_is_stopped_has_succeeded(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    """Regression for issue 15, item 8: a stop reported a success as stalled and re-ran it."""
    settings = runtime.settings.model_copy(update={"stall_timeout_s": 0.5})
    manager = dataclasses.replace(
        runtime, settings=settings, backend=ExitsBeforeStop(runtime.backend)
    )
    job = submit_fake({"seconds": 2, "steps": 1})
    Supervisor(manager, "manager").supervise(job.id)

    assert wait_for_job(runtime, job.id, TERMINAL).state == JobState.SUCCEEDED
    [run] = runs_of(runtime, job.id)
    assert run.state == "succeeded"


def test_a_launch_refused_for_good_gives_up_with_a_reason(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    """Regression for issue 15, item 8: a persistent 5xx on create retried forever."""
    settings = runtime.settings.model_copy(
        update={"max_capacity_retries": 2, "retry_base_delay_s": 0.0}
    )
    refusing = FaultyBackend(runtime.backend)
    refusing.fail_next("launch", 100, message="503 Service Unavailable (injected)")
    manager = dataclasses.replace(runtime, settings=settings, backend=refusing)
    job = submit_fake()
    for _ in range(10):
        Supervisor(manager, "manager").supervise(job.id)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == JobState.FAILED
    assert done.error_code == "capacity"
    assert "max_capacity_retries 2" in (done.error_message or "")
    assert "503 Service Unavailable" in (done.error_message or "")
    assert refusing.calls["launch"] == 3


def test_a_slow_stop_keeps_the_lease(
    runtime: Runtime, submit_fake: SubmitFake, reconciler: None
) -> None:
    """Regression for issue 15, item 8: the lease lapsed during a long blocking stop."""
    slow = SlowStop(runtime.backend, delay_s=runtime.settings.lease_ttl_s * 1.5)
    manager = dataclasses.replace(runtime, backend=slow)
    job = submit_fake({"seconds": 30})
    supervising = threading.Thread(target=Supervisor(manager, "manager").supervise, args=(job.id,))
    supervising.start()
    wait_for_job(runtime, job.id, {JobState.RUNNING})
    cancel_job(runtime.sessions, job.id)
    supervising.join(timeout=60)
    assert wait_for_job(runtime, job.id, TERMINAL).state == JobState.CANCELLED
    kinds = [event.kind for event in job_events(runtime.sessions, job.id)]
    assert "adoption_requested" not in kinds, "the reconciler saw a stale lease mid-stop"
