"""Adoption in seconds: a dead manager's run is taken over at once, a frozen one's after
its lease TTL, a busy pool's by the process that replaces the dead one, and a database
restart declares no live manager dead.

The lease TTL here is long (60 s) wherever the test is about a *dead* manager, so an
adoption well before it can only be the liveness mechanism's doing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from taskmanager.models import JobEvent, Run
from taskmanager.settings import Settings
from taskmanager.supervision.liveness import Presence, watch_liveness_forever
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.worker import build_runtime
from tests.services import REPO_ROOT, ThrowawayDatabases, wait_until
from tests.taskmanager.conftest import (
    TERMINAL,
    SubmitFake,
    WorkerPool,
    container_starts,
    settings_env,
    wait_for_job,
)

LONG_TTL = {"lease_ttl_s": 60.0, "reconcile_interval_s": 60.0}


@pytest.fixture(params=["local", "aci"])
def container_backend(request: pytest.FixtureRequest) -> str:
    """Adoption after a SIGKILL on both backends (aci through the ARM emulator)."""
    return str(request.param)


@pytest.fixture
def long_ttl(manager_settings: Settings, database_url: str, redis_url: str) -> Iterator[Runtime]:
    """A runtime whose lease TTL no test waits out, with the liveness watcher running."""
    settings = manager_settings.model_copy(update=LONG_TTL)
    runtime = build_runtime(settings, database_url, redis_url)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_liveness_forever, args=(runtime, stop), daemon=True)
    watcher.start()
    yield runtime
    stop.set()
    watcher.join(timeout=10)
    runtime.engine.dispose()


def _running_owner(runtime: Runtime, job_id: uuid.UUID) -> tuple[str, int]:
    """Wait until the job's run is running; return its lease owner and that process's pid."""
    found: list[tuple[str, int]] = []

    def running() -> bool:
        with runtime.sessions() as session:
            run = session.scalars(select(Run).where(Run.job_id == job_id)).first()
            if run is None or run.state != "running" or not run.lease_owner:
                return False
            found.append((run.lease_owner, int(run.lease_owner.split(":")[1])))
            return True

    wait_until(running, 60, "the job to run")
    return found[-1]


def _adopted(runtime: Runtime, job_id: uuid.UUID) -> bool:
    with runtime.sessions() as session:
        return (
            session.scalars(
                select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.kind == "adopted")
            ).first()
            is not None
        )


def _owner_of(runtime: Runtime, job_id: uuid.UUID) -> tuple[str | None, int]:
    with runtime.sessions() as session:
        run = session.scalars(select(Run).where(Run.job_id == job_id)).one()
        return run.lease_owner, run.lease_token


def test_a_killed_managers_run_is_adopted_long_before_its_lease_expires(
    long_ttl: Runtime, manager_settings: Settings, tmp_path: Path, submit_fake: SubmitFake
) -> None:
    pool = WorkerPool(long_ttl.settings, tmp_path)
    try:
        pool.start(2)
        job = submit_fake({"seconds": 4, "steps": 8})
        _, pid = _running_owner(long_ttl, job.id)
        pool.kill_group_of(pid)
        wait_until(lambda: _adopted(long_ttl, job.id), 30, "another manager to adopt the run")
        done = wait_for_job(long_ttl, job.id, TERMINAL)
    finally:
        pool.stop()
    assert done.state == "succeeded"
    with long_ttl.sessions() as session:
        [run] = session.scalars(select(Run).where(Run.job_id == job.id))
    assert run.attempt == 1  # adopted, not retried


@pytest.mark.parametrize("container_backend", ["local"], indirect=True)
def test_a_database_restart_declares_no_live_manager_dead(
    long_ttl: Runtime,
    test_databases: ThrowawayDatabases,
    tmp_path: Path,
    submit_fake: SubmitFake,
) -> None:
    """Every presence lock vanishes with the restart; only the dead manager's run moves."""
    pool = WorkerPool(long_ttl.settings, tmp_path)
    try:
        pool.start(3)
        alive = submit_fake({"seconds": 30, "steps": 30})
        doomed = submit_fake({"seconds": 30, "steps": 30})
        alive_owner, _ = _running_owner(long_ttl, alive.id)
        _, doomed_pid = _running_owner(long_ttl, doomed.id)
        _, alive_token = _owner_of(long_ttl, alive.id)
        pool.kill_group_of(doomed_pid)
        test_databases.server.restart()
        wait_until(lambda: _adopted(long_ttl, doomed.id), 30, "the dead manager's run adopted")
        time.sleep(3)  # several liveness passes after the restart
        assert _owner_of(long_ttl, alive.id) == (alive_owner, alive_token)
        assert not _adopted(long_ttl, alive.id)
    finally:
        pool.stop()


@pytest.mark.parametrize("container_backend", ["local"], indirect=True)
def test_a_frozen_managers_run_is_adopted_after_its_ttl_and_runs_once(
    manager_settings: Settings,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    submit_fake: SubmitFake,
) -> None:
    settings = manager_settings.model_copy(update={"lease_ttl_s": 3.0, "reconcile_interval_s": 60})
    runtime = build_runtime(settings, database_url, redis_url)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_liveness_forever, args=(runtime, stop), daemon=True)
    watcher.start()
    pool = WorkerPool(settings, tmp_path)
    try:
        pool.start(2)
        job = submit_fake({"seconds": 8, "steps": 16})
        _, pid = _running_owner(runtime, job.id)
        os.killpg(os.getpgid(pid), signal.SIGSTOP)
        try:
            wait_until(lambda: _adopted(runtime, job.id), 30, "the frozen manager's run adopted")
        finally:
            os.killpg(os.getpgid(pid), signal.SIGCONT)
        done = wait_for_job(runtime, job.id, TERMINAL, timeout_s=60)
    finally:
        pool.stop()
        stop.set()
        watcher.join(timeout=10)
        runtime.engine.dispose()
    assert done.state == "succeeded"
    with runtime.sessions() as session:
        runs = list(session.scalars(select(Run).where(Run.job_id == job.id)))
    assert len(runs) == 1
    assert container_starts(runtime, runs[0]) == 1  # the container ran once, not twice


@pytest.mark.parametrize("container_backend", ["local"], indirect=True)
def test_a_busy_pools_dead_manager_is_replaced_by_one_that_adopts_its_run(
    manager_settings: Settings, tmp_path: Path, submit_fake: SubmitFake, runtime: Runtime
) -> None:
    """`clipyard worker -n 1` busy with a long run: its replacement takes the run first."""
    settings = manager_settings.model_copy(update=LONG_TTL)
    env = settings_env(settings)
    log = (tmp_path / "pool.log").open("ab")
    pool = subprocess.Popen(
        [str(Path(sys.executable).parent / "clipyard"), "worker", "-n", "1", "--no-reconcile"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        job = submit_fake({"seconds": 6, "steps": 12})
        _, pid = _running_owner(runtime, job.id)
        os.kill(pid, signal.SIGKILL)  # the manager, not its pool
        wait_until(lambda: _adopted(runtime, job.id), 30, "the replacement to adopt the run")
        done = wait_for_job(runtime, job.id, TERMINAL, timeout_s=60)
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=60)
    assert done.state == "succeeded"
    owner, _ = _owner_of(runtime, job.id)
    assert owner is not None
    assert int(owner.split(":")[1]) != pid


def test_a_presence_lock_is_one_sessions_and_a_clash_takes_a_new_id(database_url: str) -> None:
    first = Presence(database_url, "host:1:abc").start()
    clash = Presence(database_url, "host:1:abc", new_id=lambda: "host:1:def").start()
    stuck = Presence(database_url, "host:1:abc", retry_s=0.05)
    try:
        assert first.is_held
        assert clash.is_held
        assert clash.manager_id == "host:1:def"
        stuck.start(timeout_s=0.5)
        assert not stuck.is_held  # no new id to take: it waits for the lock
        first.stop()
        assert stuck.wait_held(5.0)  # released with the first one's session
    finally:
        clash.stop()
        stuck.stop()
