"""Task-manager fixtures: fast settings, a runtime, real worker processes, test rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from taskmanager.jobs import JobRequest, submit_job
from taskmanager.models import Job, Run
from taskmanager.settings import Settings
from taskmanager.states import TERMINAL_JOB_STATES, JobState
from taskmanager.supervision.reconciler import reconcile_forever
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.worker import build_runtime
from tests.armemulator.fixtures import arm_emulator, emulator_settings  # noqa: F401
from tests.services import REPO_ROOT
from tests.taskmanager.factories import make_owner_upload_template

FAST = {
    "lease_ttl_s": 2.0,
    "poll_interval_s": 0.2,
    "stall_timeout_s": 60.0,
    "reconcile_interval_s": 0.5,
    "retry_base_delay_s": 0.2,
    "retry_max_delay_s": 1.0,
    "stop_grace_s": 1.0,
    "admission_retry_s": 0.2,
    "allow_fake_jobs": True,
}


def settings_env(settings: Settings) -> dict[str, str]:
    """Return environment variables that reproduce ``settings`` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        key = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}.get(
            name, f"CLIPYARD_{name.upper()}"
        )
        env[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@pytest.fixture
def container_backend() -> str:
    """Which container backend the managers use; suites override this to run on both."""
    return "local"


@pytest.fixture
def manager_settings(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    container_backend: str,
    request: pytest.FixtureRequest,
) -> Settings:
    """Settings for supervision tests: fast timings, fake jobs allowed, the chosen backend."""
    backend: dict[str, Any] = {}
    if container_backend == "aci":
        backend = emulator_settings(request.getfixturevalue("arm_emulator"))
    return Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        **FAST,  # type: ignore[arg-type]
        **backend,
    )


@pytest.fixture
def runtime(manager_settings: Settings, database_url: str, redis_url: str) -> Iterator[Runtime]:
    """The test process's own runtime (to submit jobs, reconcile, inspect)."""
    rt = build_runtime(manager_settings, database_url, redis_url)
    yield rt
    rt.engine.dispose()


class WorkerPool:
    """Real task-manager processes (TaskTiger workers), each in its own process group."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = settings_env(settings)
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1, queues: str = "interactive,batch") -> None:
        """Start ``count`` more managers."""
        for _ in range(count):
            log = (self.log_dir / f"worker-{len(self.processes)}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "taskmanager.supervision.worker", "--queues", queues],
                    env=self.env,
                    cwd=REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def kill_group_of(self, pid: int) -> None:
        """SIGKILL the whole process group of the manager that ``pid`` belongs to."""
        os.killpg(os.getpgid(pid), signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM every manager's group and wait; SIGKILL stragglers."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def workers(manager_settings: Settings, tmp_path: Path) -> Iterator[WorkerPool]:
    """A pool of manager processes, stopped after the test."""
    pool = WorkerPool(manager_settings, tmp_path)
    yield pool
    pool.stop()


@pytest.fixture
def reconciler(runtime: Runtime) -> Iterator[None]:
    """Run the reconciler on its interval in the background, as `clipyard worker` does."""
    stop = threading.Event()
    thread = threading.Thread(target=reconcile_forever, args=(runtime, stop), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def owner_and_upload(runtime: Runtime) -> tuple[uuid.UUID, uuid.UUID, str]:
    """Insert a user, an upload and a template; return (user id, upload id, template name)."""
    with runtime.sessions.begin() as session:
        owner_id, upload_id = make_owner_upload_template(session, "frame")
    return owner_id, upload_id, "frame"


# Every state a job can end in (until someone retries it).
TERMINAL = set(TERMINAL_JOB_STATES)


def runs_of(runtime: Runtime, job_id: uuid.UUID) -> list[Run]:
    """Return the job's runs, first attempt first."""
    with runtime.sessions() as session:
        return list(session.scalars(select(Run).where(Run.job_id == job_id).order_by(Run.attempt)))


def container_starts(runtime: Runtime, run: Run) -> int:
    """Count how many times the attempt's container started, from its saved log."""
    assert run.log_key is not None
    text = b"".join(runtime.storage.iter_bytes(run.log_key)).decode()
    return sum(1 for line in text.splitlines() if json.loads(line).get("event") == "start")


SubmitFake = Callable[..., Job]


@pytest.fixture
def submit_fake(runtime: Runtime, owner_and_upload: tuple[uuid.UUID, uuid.UUID, str]) -> SubmitFake:
    """Submit a job that runs the scripted stand-in container."""
    owner_id, upload_id, template = owner_and_upload

    def submit(fake: dict[str, Any] | None = None, **fields: Any) -> Job:
        request = JobRequest(
            owner_id=owner_id,
            template_name=template,
            upload_id=upload_id,
            params={"fake": fake or {"seconds": 0.5}},
            **fields,
        )
        job, _ = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
        return job

    return submit


def wait_for_job(
    runtime: Runtime,
    job_id: uuid.UUID,
    states: set[JobState],
    timeout_s: float = 30.0,
) -> Job:
    """Wait until the job is in one of ``states``; fail with its events if it never is."""
    deadline = time.monotonic() + timeout_s
    while True:
        with runtime.sessions() as session:
            job = session.get_one(Job, job_id)
            if JobState(job.state) in states:
                return job
        if time.monotonic() > deadline:
            raise AssertionError(
                f"job {job_id} stayed {job.state}, wanted {sorted(states)}; events:\n"
                + describe_events(runtime, job_id)
            )
        time.sleep(0.05)


def describe_events(runtime: Runtime, job_id: uuid.UUID) -> str:
    """Return the job's events, one per line (for failure messages)."""
    from taskmanager.jobs import job_events

    return "\n".join(
        f"  {e.id} {e.kind} {e.from_state or ''}->{e.to_state or ''} {e.data}"
        for e in job_events(runtime.sessions, job_id)
    )


def session_of(runtime: Runtime) -> Session:
    """Open a session on the test's database."""
    return runtime.sessions()
