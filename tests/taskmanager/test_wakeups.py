"""No job is stranded by its queue entry: a failed task, an errored entry, a late schedule.

Regressions for issue 15, item 2: a supervise task that raised went to TaskTiger's error
set, its entry kept ``is_queued`` saying yes, and the reconciler skipped the job forever.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import OperationalError
from tasktiger import Worker
from tasktiger.executor import SyncExecutor

from taskmanager.backends.base import ContainerSpec
from taskmanager.logs import configure_logging
from taskmanager.queueing import TaskTigerEnqueuer, create_tiger, install_task_handlers
from taskmanager.states import JobState
from taskmanager.supervision.reconciler import reconcile
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from taskmanager.supervision.tasks import SupervisionHandlers
from tests.taskmanager.conftest import SubmitFake
from tests.taskmanager.faults import FaultyBackend


@pytest.fixture
def enqueuer(runtime: Runtime) -> TaskTigerEnqueuer:
    """The runtime's TaskTiger enqueuer, on the test's own Redis."""
    assert isinstance(runtime.enqueuer, TaskTigerEnqueuer)
    return runtime.enqueuer


@pytest.fixture
def handlers(runtime: Runtime) -> Iterator[SupervisionHandlers]:
    """This process serves supervise tasks on the test's runtime (as a worker would)."""
    configure_logging("WARNING")  # a TaskTiger worker needs structlog configured
    handlers = SupervisionHandlers(runtime, "manager-under-test")
    install_task_handlers(handlers)
    yield handlers
    install_task_handlers(None)


def _serve_once(enqueuer: TaskTigerEnqueuer) -> None:
    """Run what is queued on the interactive queue once, in this process."""
    # A TaskTiger made after logging is configured, as `clipyard worker` makes it.
    tiger = create_tiger(enqueuer.settings, enqueuer.tiger.connection)
    worker = Worker(tiger, queues=["interactive"], executor_class=SyncExecutor)
    worker.run(once=True, force_once=True)


def _entry_states(enqueuer: TaskTigerEnqueuer, job_id: object) -> dict[str, float | None]:
    task = enqueuer._task(job_id, "interactive", 0)  # type: ignore[arg-type]
    return vars(enqueuer._entry(task))


def test_a_task_that_raised_leaves_no_entry_and_the_reconciler_wakes_the_job(
    runtime: Runtime,
    enqueuer: TaskTigerEnqueuer,
    handlers: SupervisionHandlers,
    submit_fake: SubmitFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(self: Supervisor, job_id: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patch:
        patch.setattr(Supervisor, "supervise", unreachable)
        job = submit_fake()
        _serve_once(enqueuer)
    states = _entry_states(enqueuer, job.id)
    assert states["error"] is None, "a failed supervise must not park its task in the error set"
    assert not enqueuer.is_queued(job.id, is_batch=False)
    report = reconcile(runtime)
    assert job.id in report.requeued
    assert enqueuer.is_queued(job.id, is_batch=False)


def test_an_entry_in_the_error_set_does_not_count_and_is_replaced(
    runtime: Runtime, enqueuer: TaskTigerEnqueuer, submit_fake: SubmitFake
) -> None:
    job = submit_fake()
    # What an older manager (or a crash in the task wrapper) left behind: the entry moved
    # from the queue to the error set, its task record still in Redis.
    tiger, connection = enqueuer.tiger, enqueuer.tiger.connection
    task_id = enqueuer._task(job.id, "interactive", 0).id
    prefix = tiger.config["REDIS_PREFIX"]
    connection.zrem(f"{prefix}:queued:interactive", task_id)
    connection.zadd(f"{prefix}:error:interactive", {task_id: time.time()})
    connection.sadd(f"{prefix}:error", "interactive")
    assert not enqueuer.is_queued(job.id, is_batch=False)
    assert job.id in reconcile(runtime).requeued
    states = _entry_states(enqueuer, job.id)
    assert states["queued"] is not None
    assert states["error"] is None


def test_an_entry_scheduled_after_the_job_is_due_does_not_count(
    runtime: Runtime, enqueuer: TaskTigerEnqueuer, submit_fake: SubmitFake
) -> None:
    job = submit_fake()
    enqueuer.tiger.connection.flushdb()  # only the late entry below remains
    enqueuer.enqueue(job.id, is_batch=False, max_runtime_s=60, delay_s=3600)
    assert enqueuer.is_queued(job.id, is_batch=False, due_by=datetime.now(UTC) + timedelta(hours=2))
    assert not enqueuer.is_queued(job.id, is_batch=False)
    assert runtime.sessions().get_one(type(job), job.id).job_state is JobState.QUEUED
    assert job.id in reconcile(runtime).requeued
    assert enqueuer.is_queued(job.id, is_batch=False)


def test_waking_sooner_moves_a_later_entry_forward(
    enqueuer: TaskTigerEnqueuer, submit_fake: SubmitFake
) -> None:
    job = submit_fake()
    enqueuer.tiger.connection.flushdb()
    enqueuer.enqueue(job.id, is_batch=False, max_runtime_s=60, delay_s=3600)
    enqueuer.enqueue(job.id, is_batch=False, max_runtime_s=60, delay_s=5)
    scheduled = _entry_states(enqueuer, job.id)["scheduled"]
    assert scheduled is not None
    assert scheduled < time.time() + 60


def test_a_failed_cloud_listing_does_not_stop_the_rest_of_a_pass(
    runtime: Runtime, enqueuer: TaskTigerEnqueuer, submit_fake: SubmitFake
) -> None:
    """Regression for issue 15, item 7: one failed read aborted the whole reconcile pass."""
    job = submit_fake()
    enqueuer.tiger.connection.flushdb()  # Redis lost the wake-up
    listing_fails = FaultyBackend(runtime.backend)
    listing_fails.fail_next("list_ours", 1)
    report = reconcile(dataclasses.replace(runtime, backend=listing_fails))
    assert job.id in report.requeued
    assert any("remove_leaked_containers" in failure for failure in report.failures)


def test_the_janitor_touches_only_its_own_deployment_s_containers(runtime: Runtime) -> None:
    """Regression for issue 15, item 8: deployments sharing a resource group."""
    for name, deployment in (("cy-theirs-1", "other"), ("cy-ours-1", "default")):
        runtime.backend.launch(
            ContainerSpec(
                name=name,
                image="fake",
                args=["--seconds", "30"],
                cpu=Decimal(1),
                memory_gb=Decimal(1),
                tags={"app": "clipyard", "deployment": deployment, "job_id": str(uuid.uuid4())},
            )
        )
    report = reconcile(runtime)
    assert report.removed_containers == ["cy-ours-1"]
    assert [info.name for info in runtime.backend.list_ours()] == ["cy-theirs-1"]
    runtime.backend.remove("cy-theirs-1")
