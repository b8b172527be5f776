"""Supervision under failure: dead managers, races, lost Redis, a restarted database."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
import uuid
from decimal import Decimal

import pytest
import redis
from sqlalchemy import select

from taskmanager.backends.base import ContainerSpec
from taskmanager.jobs import job_events
from taskmanager.models import Batch, Job, JobEvent, Run
from taskmanager.states import JobState
from taskmanager.supervision.reconciler import reconcile
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.services import ThrowawayDatabases, wait_until
from tests.taskmanager.conftest import (
    TERMINAL,
    SubmitFake,
    WorkerPool,
    container_starts,
    wait_for_job,
)
from tests.taskmanager.faults import FaultyBackend


def _only_run(runtime: Runtime, job_id: uuid.UUID) -> Run:
    with runtime.sessions() as session:
        [run] = session.scalars(select(Run).where(Run.job_id == job_id))
        return run


def _kinds(runtime: Runtime, job_id: uuid.UUID) -> list[str]:
    return [event.kind for event in job_events(runtime.sessions, job_id)]


def _supervisor_pid(runtime: Runtime, job_id: uuid.UUID) -> int:
    run = _only_run(runtime, job_id)
    assert run.lease_owner is not None
    return int(run.lease_owner.split(":")[1])


@pytest.mark.parametrize("container_backend", ["local", "aci"])
def test_sigkilled_manager_is_replaced_by_one_that_adopts_the_same_container(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake, reconciler: None
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 4, "steps": 8})
    wait_for_job(runtime, job.id, {JobState.RUNNING})
    workers.kill_group_of(_supervisor_pid(runtime, job.id))
    workers.start(1)
    done = wait_for_job(runtime, job.id, TERMINAL, timeout_s=40)
    assert done.state == "succeeded"
    run = _only_run(runtime, job.id)
    assert run.attempt == 1
    assert run.lease_token >= 2  # taken over
    assert container_starts(runtime, run) == 1  # adopted, never launched twice
    kinds = _kinds(runtime, job.id)
    assert "adoption_requested" in kinds
    assert "adopted" in kinds


def test_two_managers_racing_for_one_job_supervise_it_once(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    job = submit_fake({"seconds": 1})
    barrier = threading.Barrier(2)

    def race(name: str) -> None:
        barrier.wait()
        Supervisor(runtime, name).supervise(job.id)

    threads = [threading.Thread(target=race, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "succeeded"
    run = _only_run(runtime, job.id)
    assert run.lease_token == 1  # one lease ever taken
    assert container_starts(runtime, run) == 1


def test_graceful_shutdown_hands_the_run_over(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 3, "steps": 6})
    wait_for_job(runtime, job.id, {JobState.RUNNING})
    pid = _supervisor_pid(runtime, job.id)
    first = workers.processes[0]
    os.killpg(os.getpgid(pid), signal.SIGTERM)
    first.wait(timeout=20)
    assert first.returncode == 0
    wait_until(lambda: "handed_over" in _kinds(runtime, job.id), 10, "hand-over event")
    workers.start(1)  # picks the re-enqueued job up at once: no lease TTL to wait out
    done = wait_for_job(runtime, job.id, TERMINAL)
    assert done.state == "succeeded"
    run = _only_run(runtime, job.id)
    assert container_starts(runtime, run) == 1


def test_redis_flushed_mid_run_and_while_queued_loses_no_job(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake, reconciler: None, redis_url: str
) -> None:
    jobs = [submit_fake({"seconds": 0.6}) for _ in range(6)]
    workers.start(2)
    wait_for_job(runtime, jobs[0].id, {JobState.RUNNING})
    redis.Redis.from_url(redis_url).flushall()  # running and queued entries all gone
    for job in jobs:
        assert wait_for_job(runtime, job.id, TERMINAL, timeout_s=40).state == "succeeded"


def test_postgres_restart_mid_run_is_ridden_out(
    runtime: Runtime,
    workers: WorkerPool,
    submit_fake: SubmitFake,
    test_databases: ThrowawayDatabases,
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 3, "steps": 6})
    wait_for_job(runtime, job.id, {JobState.RUNNING})
    test_databases.server.restart()
    done = wait_for_job(runtime, job.id, TERMINAL, timeout_s=40)
    assert done.state == "succeeded"
    assert container_starts(runtime, _only_run(runtime, job.id)) == 1


@pytest.mark.parametrize("container_backend", ["local", "aci"])
def test_janitor_removes_leaked_containers_but_never_a_live_runs(
    runtime: Runtime, workers: WorkerPool, submit_fake: SubmitFake
) -> None:
    workers.start(1)
    job = submit_fake({"seconds": 5})
    wait_for_job(runtime, job.id, {JobState.RUNNING})
    leaked = ContainerSpec(
        name="cy-leaked-1",
        image="fake",
        args=["--seconds", "30"],
        cpu=Decimal(1),
        memory_gb=Decimal(1),
        tags={"app": "clipyard", "job_id": str(uuid.uuid4())},
    )
    runtime.backend.launch(leaked)
    report = reconcile(runtime)
    assert report.removed_containers == ["cy-leaked-1"]
    names = [c.name for c in runtime.backend.list_ours()]
    assert names == [_only_run(runtime, job.id).container_name]
    assert wait_for_job(runtime, job.id, TERMINAL).state == "succeeded"


def _make_batch(runtime: Runtime, owner_id: uuid.UUID, **fields: object) -> uuid.UUID:
    with runtime.sessions.begin() as session:
        batch = Batch(
            owner_id=owner_id,
            name=f"b-{uuid.uuid4().hex[:6]}",
            cpu=Decimal(1),
            memory_gb=Decimal("1.5"),
            max_runtime_s=600,
            **fields,
        )
        session.add(batch)
        session.flush()
        return batch.id


def _max_overlap(runs: list[Run]) -> int:
    """Return the most runs whose containers were alive at the same moment."""
    moments = []
    for run in runs:
        assert run.launched_at is not None
        assert run.finished_at is not None
        moments += [(run.launched_at, 1), (run.finished_at, -1)]
    alive = peak = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):
        alive += change
        peak = max(peak, alive)
    return peak


@pytest.mark.parametrize("container_backend", ["local", "aci"])
def test_batch_concurrency_cap_holds(
    runtime: Runtime,
    workers: WorkerPool,
    submit_fake: SubmitFake,
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    batch_id = _make_batch(runtime, owner_and_upload[0], budget_usd=Decimal(10), max_concurrent=3)
    jobs = [submit_fake({"seconds": 0.5}, batch_id=batch_id, row_id=str(i)) for i in range(10)]
    workers.start(5)
    for job in jobs:
        assert wait_for_job(runtime, job.id, TERMINAL, timeout_s=60).state == "succeeded"
    with runtime.sessions() as session:
        runs = list(session.scalars(select(Run).join(Job).where(Job.batch_id == batch_id)))
    assert len(runs) == 10
    assert _max_overlap(runs) <= 3


@pytest.mark.parametrize("container_backend", ["local", "aci"])
def test_budget_admits_what_it_covers_and_waits_for_running_jobs(
    runtime: Runtime,
    workers: WorkerPool,
    submit_fake: SubmitFake,
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    # Before any measured run, one attempt is estimated at (5 s x 3 + 5 s) x 1 vCPU, 1.5 GB.
    estimate = Decimal(20) * (Decimal("0.0405") + Decimal("1.5") * Decimal("0.00445")) / 3600
    batch_id = _make_batch(
        runtime, owner_and_upload[0], budget_usd=estimate * Decimal("4.5"), max_concurrent=10
    )
    jobs = [submit_fake({"seconds": 1}, batch_id=batch_id, row_id=str(i)) for i in range(10)]
    workers.start(5)
    for job in jobs:
        assert wait_for_job(runtime, job.id, TERMINAL, timeout_s=60).state == "succeeded"
    with runtime.sessions() as session:
        reserved = [
            Decimal(e.data["reserved_usd"])
            for e in session.scalars(
                select(JobEvent).where(JobEvent.to_state == "starting").order_by(JobEvent.id)
            )
        ]
        refusals = set(
            session.scalars(
                select(JobEvent.data["reason"].astext).where(JobEvent.kind == "admission")
            )
        )
    # Only four estimates fit at once; the rest waited for the running jobs to settle
    # (they cost far less than reserved) instead of pausing the batch.
    assert len(set(reserved[:4])) == 1
    assert abs(reserved[0] - estimate) < Decimal("0.000001")
    assert "budget_wait" in refusals
    batch = _batch(runtime, batch_id)
    assert (batch.state, batch.paused_reason) == ("open", None)
    assert batch.reserved_usd == 0
    assert batch.spent_usd <= batch.budget_usd


def _batch(runtime: Runtime, batch_id: uuid.UUID) -> Batch:
    with runtime.sessions() as session:
        return session.get_one(Batch, batch_id)


def _job(runtime: Runtime, job_id: uuid.UUID) -> Job:
    with runtime.sessions() as session:
        return session.get_one(Job, job_id)


def test_janitor_leaves_a_just_finished_run_s_container_to_its_finisher(
    runtime: Runtime, submit_fake: SubmitFake
) -> None:
    """Found by the soak: the janitor listed a container, its manager committed the run's
    end, and the janitor then removed it as "leaked" too (a second delete, a false event)."""
    job = submit_fake({"seconds": 0.2, "steps": 1})
    keeps = FaultyBackend(runtime.backend)
    keeps.fail_next("remove", 1, message="503 Service Unavailable (injected)")
    Supervisor(dataclasses.replace(runtime, backend=keeps), "manager").supervise(job.id)
    run = _only_run(runtime, job.id)
    assert run.state == "succeeded"
    patient = runtime.settings.model_copy(update={"reconcile_interval_s": 60.0})
    report = reconcile(dataclasses.replace(runtime, settings=patient))
    assert report.removed_containers == []
    assert "leaked_container_removed" not in _kinds(runtime, job.id)
    time.sleep(0.6)  # past the test settings' reconcile interval: now it is a leak
    assert reconcile(runtime).removed_containers == [run.container_name]
