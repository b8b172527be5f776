"""`clipyard worker`: managers plus reconciler, separate queues, restarts, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from taskmanager.jobs import cancel_job
from taskmanager.models import Batch, Upload
from taskmanager.settings import Settings
from taskmanager.states import JobState
from taskmanager.supervision.runtime import Runtime
from tests.services import REPO_ROOT
from tests.taskmanager.conftest import TERMINAL, SubmitFake, settings_env, wait_for_job

CLIPYARD = str(Path(sys.executable).parent / "clipyard")


@contextmanager
def clipyard_worker(settings: Settings, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [CLIPYARD, "worker", *args],
            env=settings_env(settings),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)


def test_interactive_jobs_are_not_starved_by_a_busy_batch_queue(
    runtime: Runtime, manager_settings: Settings, tmp_path: Path, submit_fake: SubmitFake
) -> None:
    with runtime.sessions.begin() as session:
        owner = session.get_one(Upload, submit_fake({"seconds": 0.1}).upload_id).owner_id
        batch = Batch(
            owner_id=owner,
            name="big",
            budget_usd=100,
            cpu=1,
            memory_gb=1,
            max_runtime_s=600,
            max_concurrent=100,
        )
        session.add(batch)
        session.flush()
        batch_id = batch.id
    batch_jobs = [submit_fake({"seconds": 20}, batch_id=batch_id, row_id=str(i)) for i in range(4)]
    with (
        clipyard_worker(manager_settings, tmp_path / "batch.log", "--queues", "batch", "-n", "1"),
        clipyard_worker(
            manager_settings, tmp_path / "interactive.log", "--queues", "interactive", "-n", "1"
        ),
    ):
        wait_for_job(runtime, batch_jobs[0].id, {JobState.RUNNING})
        interactive = submit_fake({"seconds": 0.2})
        assert wait_for_job(runtime, interactive.id, TERMINAL, timeout_s=20).state == "succeeded"
        for job in batch_jobs:
            cancel_job(runtime.sessions, job.id)


def test_sigterm_stops_cleanly_and_a_dead_manager_is_replaced(
    runtime: Runtime, manager_settings: Settings, tmp_path: Path, submit_fake: SubmitFake
) -> None:
    with clipyard_worker(manager_settings, tmp_path / "w.log", "-n", "1") as process:
        first = submit_fake({"seconds": 0.2})
        assert wait_for_job(runtime, first.id, TERMINAL).state == "succeeded"
        [manager] = psutil.Process(process.pid).children()
        os.killpg(manager.pid, signal.SIGKILL)
        second = submit_fake({"seconds": 0.2})
        assert wait_for_job(runtime, second.id, TERMINAL, timeout_s=30).state == "succeeded"
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_worker_without_database_url_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(
        [CLIPYARD, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
