"""Batches under real managers: the budget stops them, a raise resumes them, the cap holds.

No reconciler runs here: batch jobs must be woken by the slots and money that free up,
not rescued by a periodic sweep.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from taskmanager.backends.base import ContainerSpec, ContainerState
from taskmanager.batches.jobs import BatchRow, submit_rows
from taskmanager.batches.ledger import waiting_batch_jobs
from taskmanager.batches.service import BatchRequest, create_batch, get_batch, set_budget
from taskmanager.cost import PriceTable, container_cost, estimate_job_cost
from taskmanager.models import Batch, Job, JobEvent, Run, Template
from taskmanager.settings import Settings
from taskmanager.states import JobState
from taskmanager.supervision.reconciler import reconcile
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.services import wait_until
from tests.taskmanager.conftest import TERMINAL, SubmitFake, WorkerPool, wait_for_job
from tests.taskmanager.factories import make_run
from tests.taskmanager.faults import FaultyBackend

# 1 vCPU and 16 GB make a second cost about $0.000031: big enough for micro-dollar money.
CPU, MEMORY = Decimal(1), Decimal(16)
JOB_SECONDS = 1.0
MAX_RUNTIME_S = 4


@pytest.fixture
def manager_settings(manager_settings: Settings) -> Settings:
    """Estimate 0.8 s per job before calibration (the jobs take about 1 s)."""
    return manager_settings.model_copy(
        update={"default_seconds_per_video_second": 0.16, "container_startup_s": 0.0}
    )


def _batch(runtime: Runtime, owner: uuid.UUID, budget: Decimal, max_concurrent: int) -> uuid.UUID:
    request = BatchRequest(
        owner_id=owner,
        name=f"b-{uuid.uuid4().hex[:6]}",
        budget_usd=budget,
        max_concurrent=max_concurrent,
        cpu=CPU,
        memory_gb=MEMORY,
        max_runtime_s=MAX_RUNTIME_S,
    )
    return create_batch(runtime.sessions, runtime.settings, request).id


def _submit(
    runtime: Runtime,
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
    budget: Decimal,
    count: int,
    max_concurrent: int,
) -> uuid.UUID:
    owner, upload, template = owner_and_upload
    batch_id = _batch(runtime, owner, budget, max_concurrent)
    rows = [
        BatchRow(f"row-{i}", template, upload, params={"fake": {"seconds": JOB_SECONDS}})
        for i in range(count)
    ]
    submit_rows(runtime.sessions, runtime.enqueuer, runtime.settings, batch_id, owner, rows)
    return batch_id


def _jobs(runtime: Runtime, batch_id: uuid.UUID) -> list[Job]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Job).where(Job.batch_id == batch_id)))


def _overrun_bound(runtime: Runtime, batch_id: uuid.UUID) -> Decimal:
    """Return the documented bound on overspending: what running jobs could overrun.

    At most ``max_concurrent`` jobs run past their reservation, each by at most the
    difference between its whole deadline billed and what it reserved.
    """
    with runtime.sessions() as session:
        batch = session.get_one(Batch, batch_id)
        reserved = [
            Decimal(e.data["reserved_usd"])
            for e in session.scalars(
                select(JobEvent)
                .join(Job, Job.id == JobEvent.job_id)
                .where(Job.batch_id == batch_id, JobEvent.to_state == "starting")
            )
        ]
    most = container_cost(
        PriceTable.from_settings(runtime.settings), MAX_RUNTIME_S, CPU, MEMORY, is_spot=False
    )
    return batch.max_concurrent * (most - min(reserved))


def test_budget_stops_the_batch_and_a_raise_resumes_it(
    runtime: Runtime,
    workers: WorkerPool,
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    per_job = container_cost(
        PriceTable.from_settings(runtime.settings), 1.05, CPU, MEMORY, is_spot=False
    )
    budget = per_job * 5
    workers.start(3, queues="batch")
    batch_id = _submit(runtime, owner_and_upload, budget, count=10, max_concurrent=2)

    def is_paused() -> bool:
        view = get_batch(runtime.sessions, batch_id)
        return view.batch.state == "paused" and not any(
            view.jobs_by_state.get(s) for s in ("starting", "running")
        )

    wait_until(is_paused, 60, "the batch pausing at its budget")
    view = get_batch(runtime.sessions, batch_id)
    assert view.batch.paused_reason == "budget_exhausted"
    done = view.jobs_by_state.get("succeeded", 0)
    assert 2 <= done <= 8, view.jobs_by_state
    assert view.jobs_by_state.get("queued") == 10 - done
    assert view.batch.reserved_usd == 0
    assert view.batch.spent_usd <= budget + _overrun_bound(runtime, batch_id)
    assert view.batch.spent_usd == sum(j.actual_cost_usd for j in _jobs(runtime, batch_id))
    # The queued jobs wait for an operator: each saw the refusal once, none was polled.
    with runtime.sessions() as session:
        reasons = list(
            session.scalars(
                select(JobEvent.data["reason"].astext)
                .join(Job, Job.id == JobEvent.job_id)
                .where(Job.batch_id == batch_id, JobEvent.kind == "admission")
            )
        )
    assert "budget_exhausted" in reasons

    raised = set_budget(runtime.sessions, runtime.enqueuer, batch_id, budget * 4)
    assert (raised.batch.state, raised.batch.paused_reason) == ("open", None)
    for job in _jobs(runtime, batch_id):
        wait_for_job(runtime, job.id, TERMINAL, timeout_s=60)
    final = get_batch(runtime.sessions, batch_id)
    assert final.jobs_by_state == {"succeeded": 10}
    assert final.batch.state == "open"
    assert final.batch.spent_usd <= budget * 4 + _overrun_bound(runtime, batch_id)
    assert final.batch.reserved_usd == 0


def test_max_concurrent_holds_while_interactive_jobs_run(
    runtime: Runtime,
    workers: WorkerPool,
    submit_fake: SubmitFake,
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    workers.start(5, queues="batch")
    workers.start(1, queues="interactive")
    batch_id = _submit(runtime, owner_and_upload, Decimal(10), count=9, max_concurrent=3)
    interactive = [submit_fake({"seconds": 0.2}) for _ in range(2)]
    for job in interactive:
        wait_for_job(runtime, job.id, {JobState.SUCCEEDED}, timeout_s=30)
    assert get_batch(runtime.sessions, batch_id).jobs_by_state.get("queued", 0) > 0, (
        "the interactive jobs should finish while the batch still waits for slots"
    )
    for job in _jobs(runtime, batch_id):
        wait_for_job(runtime, job.id, TERMINAL, timeout_s=60)
    assert get_batch(runtime.sessions, batch_id).jobs_by_state == {"succeeded": 9}
    with runtime.sessions() as session:
        spans = session.execute(
            select(Run.started_at, Run.finished_at)
            .join(Job, Job.id == Run.job_id)
            .where(Job.batch_id == batch_id)
        ).all()
    # Sweep the containers' lives (their own start and exit): never more than 3 at once.
    moments = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
        key=lambda m: (m[0], m[1]),
    )
    alive, most = 0, 0
    for _, step in moments:
        alive += step
        most = max(most, alive)
    assert most == 3


def test_the_next_jobs_woken_fill_the_free_slots_oldest_first(
    runtime: Runtime, owner_and_upload: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    """One statement picks the wake-ups: as many queued jobs as free slots, none if closed."""
    batch_id = _submit(runtime, owner_and_upload, Decimal(1), count=5, max_concurrent=3)

    def start(job: Job) -> None:  # as admission leaves it: a live run, the job starting
        make_run(session, job)
        job.state = "starting"
        session.flush()

    def woken() -> list[uuid.UUID]:
        return [job_id for job_id, _ in waiting_batch_jobs(session, batch_id)]

    with runtime.sessions.begin() as session:
        jobs = list(
            session.scalars(
                select(Job).where(Job.batch_id == batch_id).order_by(Job.created_at, Job.id)
            )
        )
        start(jobs[0])
        assert woken() == [jobs[1].id, jobs[2].id]
        start(jobs[1])
        start(jobs[2])
        assert woken() == []  # full: no wake-up, and never a negative LIMIT
        batch = session.get_one(Batch, batch_id)
        batch.max_concurrent = 5
        session.flush()
        assert woken() == [jobs[3].id, jobs[4].id]
        batch.state = "paused"
        session.flush()
        assert woken() == []
        assert waiting_batch_jobs(session, uuid.uuid4()) == []


def test_an_attempt_falling_back_to_regular_reserves_the_regular_price(
    runtime: Runtime, owner_and_upload: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    """Regression for issue 15, item 4b: a Spot reservation for a Regular attempt."""
    owner, upload, template = owner_and_upload
    request = BatchRequest(
        owner_id=owner,
        name="spot-batch",
        budget_usd=Decimal(1),
        cpu=CPU,
        memory_gb=MEMORY,
        max_runtime_s=MAX_RUNTIME_S,
        is_spot=True,
    )
    batch_id = create_batch(runtime.sessions, runtime.settings, request).id
    row = BatchRow("spot-row", template, upload, params={"fake": {"seconds": 1}})
    submit_rows(runtime.sessions, runtime.enqueuer, runtime.settings, batch_id, owner, [row])
    [job] = _jobs(runtime, batch_id)
    evicted_enough = runtime.settings.spot_max_evictions
    with runtime.sessions.begin() as session:
        session.get_one(Job, job.id).evictions = evicted_enough
    prepared = Supervisor(runtime, "manager")._prepare(job.id)
    assert prepared is not None
    with runtime.sessions() as session:
        job = session.get_one(Job, job.id)
        run = session.get_one(Run, prepared.ref.run_id)
        template_row = session.get_one(Template, job.template_id)
        regular = estimate_job_cost(session, job, template_row, runtime.settings, is_spot=False)
        spot = estimate_job_cost(session, job, template_row, runtime.settings, is_spot=True)
    assert run.is_spot is False
    assert regular > spot
    assert job.reserved_usd == regular


def _stray_after_its_run(
    runtime: Runtime, owner_and_upload: tuple[uuid.UUID, uuid.UUID, str]
) -> tuple[uuid.UUID, uuid.UUID, str]:
    """Run a batch job to the end, then leave its container running again for a second.

    The same container running on after its run was billed (a removal that failed, a
    second launch): its time after the run's end is no one's until the janitor books it.
    Returns (job id, batch id, container name).
    """
    batch_id = _submit(runtime, owner_and_upload, Decimal(1), count=1, max_concurrent=1)
    [job] = _jobs(runtime, batch_id)
    Supervisor(runtime, "manager").supervise(job.id)
    assert wait_for_job(runtime, job.id, TERMINAL).state == JobState.SUCCEEDED
    with runtime.sessions() as session:
        run = session.scalars(select(Run).where(Run.job_id == job.id)).one()
    stray = ContainerSpec(
        name=run.container_name,
        image="fake",
        args=["--seconds", "30"],
        cpu=CPU,
        memory_gb=MEMORY,
        tags={"app": "clipyard", "job_id": str(job.id), "attempt": "1"},
    )
    runtime.backend.launch(stray)

    def has_run_a_second() -> bool:
        status = runtime.backend.status(run.container_name)
        started = status.started_at
        is_running = status.state == ContainerState.RUNNING and started is not None
        return is_running and datetime.now(UTC) - started > timedelta(seconds=1)

    wait_until(has_run_a_second, 20, "the stray container has run a second")
    return job.id, batch_id, run.container_name


def _spend(runtime: Runtime, job_id: uuid.UUID, batch_id: uuid.UUID) -> tuple[Decimal, Decimal]:
    """Return (the job's actual cost, the batch's spend)."""
    with runtime.sessions() as session:
        job_cost = session.get_one(Job, job_id).actual_cost_usd
        return job_cost, session.get_one(Batch, batch_id).spent_usd


def test_a_leaked_container_s_time_reaches_the_job_and_the_batch(
    runtime: Runtime, owner_and_upload: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    """Regression for issue 15, item 4c: leaked spend was never booked to anyone."""
    job_id, batch_id, name = _stray_after_its_run(runtime, owner_and_upload)
    cost_before, spent_before = _spend(runtime, job_id, batch_id)
    report = reconcile(runtime)
    assert report.removed_containers == [name]
    cost_after, spent_after = _spend(runtime, job_id, batch_id)
    extra = cost_after - cost_before
    assert extra > 0
    assert spent_after - spent_before == extra


def test_a_janitor_that_fails_to_remove_books_the_leak_once(
    runtime: Runtime, owner_and_upload: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    """A removal that fails after the booking: the next pass books only what came since."""
    job_id, batch_id, name = _stray_after_its_run(runtime, owner_and_upload)
    cost_before, spent_before = _spend(runtime, job_id, batch_id)
    failing = FaultyBackend(runtime.backend)
    failing.fail_next("remove", 1, message="503 Service Unavailable (injected)")
    first = reconcile(dataclasses.replace(runtime, backend=failing))
    assert first.removed_containers == []
    assert any(name in failure for failure in first.failures)
    cost_first, _ = _spend(runtime, job_id, batch_id)
    second = reconcile(runtime)
    assert second.removed_containers == [name]
    cost_second, spent_second = _spend(runtime, job_id, batch_id)
    booked_first, booked_again = cost_first - cost_before, cost_second - cost_first
    assert booked_first > 0
    assert booked_again < booked_first / 2, "the second pass booked the same time again"
    assert spent_second - spent_before == cost_second - cost_before
