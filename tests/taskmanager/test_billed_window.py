"""The billed window is the deadline's window, and the container keeps it by itself.

Regression for issue 15, item 4a: billing ran from the launch request to the exit while
the deadline ran from the container's start and was enforced only by a watching
manager, so a slow provisioning, a dead manager or a database outage let one job run,
and be billed, far past ``max_runtime_s``.
"""

from __future__ import annotations

import dataclasses
import time

from taskmanager.backends.base import ContainerState
from taskmanager.cost import DEADLINE_SLACK_S, max_billed_seconds
from taskmanager.states import JobState
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.services import wait_until
from tests.taskmanager.conftest import TERMINAL, SubmitFake, runs_of, wait_for_job
from tests.taskmanager.faults import SlowStartBackend, die_after_launch


def test_an_unwatched_container_ends_itself_at_its_deadline(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    job = submit_fake({"seconds": 60, "steps": 60}, max_runtime_s=2)
    name = die_after_launch(runtime, job.id)
    # No manager watches it: the container itself stops at its deadline.
    wait_until(
        lambda: runtime.backend.status(name).is_finished,
        2 + DEADLINE_SLACK_S,
        "the container to end itself",
    )
    assert runtime.backend.status(name).exit_code == 124

    Supervisor(runtime, "adopter").supervise(job.id)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert (done.state, done.error_code) == (JobState.TIMED_OUT, "deadline")
    [run] = runs_of(runtime, job.id)
    assert run.billed_seconds is not None
    assert 2.0 <= run.billed_seconds <= max_billed_seconds(2)


def test_provisioning_counts_against_the_deadline(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    """A container still pulling its image at its deadline is stopped: billing has begun."""
    slow = SlowStartBackend(runtime.backend, start_delay_s=30)
    manager = dataclasses.replace(runtime, backend=slow)
    job = submit_fake({"seconds": 0.5, "steps": 2}, max_runtime_s=1)
    began = time.monotonic()
    Supervisor(manager, "manager").supervise(job.id)

    assert time.monotonic() - began < 10  # not the 30 s provisioning
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert (done.state, done.error_code) == (JobState.TIMED_OUT, "deadline")
    [run] = runs_of(runtime, job.id)
    assert run.billed_seconds is not None
    assert 1.0 <= run.billed_seconds <= max_billed_seconds(1)
    assert slow.calls["launch"] == 1
    assert runtime.backend.status(run.container_name).state is ContainerState.NOT_FOUND


def test_billing_runs_from_the_launch_request_to_the_exit(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    slow = SlowStartBackend(runtime.backend, start_delay_s=1.0)
    manager = dataclasses.replace(runtime, backend=slow)
    job = submit_fake({"seconds": 0.5, "steps": 2})
    Supervisor(manager, "manager").supervise(job.id)

    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == JobState.SUCCEEDED
    [run] = runs_of(runtime, job.id)
    assert run.launched_at is not None
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.billed_seconds is not None
    # Provisioning (about 1 s) is billed as the cloud bills it, not only the run.
    assert run.billed_seconds >= (run.finished_at - run.launched_at).total_seconds() - 0.01
    assert run.billed_seconds >= (run.finished_at - run.started_at).total_seconds() + 0.9
