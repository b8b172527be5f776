"""Fairness benchmark: how long a newcomer waits behind another user's backlog.

User A has 200 two-second jobs queued on 4 container slots (a pool of 8 managers);
user B then submits one job. Measured twice, side by side: with fair admission (the
default) and first come, first served (``CLIPYARD_FAIR_ADMISSION=false``).

    .venv/bin/python -m tests.benchmarks.fairness
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from taskmanager.jobs import JobRequest, submit_job
from taskmanager.models import Job, Run
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.worker import build_runtime
from tests.benchmarks.common import bench_settings, emit, throwaway_services, wait_for_managers
from tests.taskmanager.conftest import settings_env
from tests.taskmanager.factories import make_owner_upload_template

BACKLOG = 200
SLOTS = 4
MANAGERS = 8
JOB_SECONDS = 2.0
STEADY_S = 10.0


def _submit(runtime: Runtime, user: tuple[uuid.UUID, uuid.UUID], template: str) -> uuid.UUID:
    request = JobRequest(
        owner_id=user[0],
        template_name=template,
        upload_id=user[1],
        params={"fake": {"seconds": JOB_SECONDS, "steps": 2}},
    )
    job, _ = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
    return job.id


def _running(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(
            session.scalar(select(func.count()).select_from(Run).where(Run.state == "running")) or 0
        )


def _states(runtime: Runtime) -> dict[str, int]:
    with runtime.sessions() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    return {state: int(count) for state, count in rows}


def _started_at(runtime: Runtime, job_id: uuid.UUID) -> float | None:
    with runtime.sessions() as session:
        started = session.scalar(select(Run.started_at).where(Run.job_id == job_id))
    return None if started is None else started.timestamp()


def measure(is_fair: bool) -> float:
    """Return seconds from the newcomer's submit to its container's start."""
    with throwaway_services() as services:
        settings = bench_settings(services, max_concurrent_containers=SLOTS, fair_admission=is_fair)
        runtime = build_runtime(settings, services.database_url, services.redis_url)
        with runtime.sessions.begin() as session:
            heavy = make_owner_upload_template(session, "heavy", duration_s=1.0)
            newcomer = make_owner_upload_template(session, "light", duration_s=1.0)
        env = {**settings_env(settings), "CLIPYARD_LOG_LEVEL": "WARNING"}
        log = (services.root / "workers.log").open("wb")
        pool = subprocess.Popen(
            [str(Path(sys.executable).parent / "clipyard"), "worker", "-n", str(MANAGERS)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_managers(runtime.enqueuer.tiger, MANAGERS)  # type: ignore[attr-defined]
            for _ in range(BACKLOG):
                _submit(runtime, heavy, "heavy")
            deadline = time.monotonic() + 120
            while _running(runtime) < SLOTS and time.monotonic() < deadline:
                time.sleep(0.05)
            # A's backlog settles into its steady state (its refused jobs asking again
            # every admission_retry_s) before the newcomer arrives.
            time.sleep(STEADY_S)
            print(f"# fair={is_fair}: at the newcomer's submit {_states(runtime)}", file=sys.stderr)
            submitted = time.time()
            late = _submit(runtime, newcomer, "light")
            while (started := _started_at(runtime, late)) is None:
                if time.time() - submitted > 900:
                    raise TimeoutError("the newcomer's job never started")
                time.sleep(0.05)
            print(f"# fair={is_fair}: at its start {_states(runtime)}", file=sys.stderr)
            return started - submitted
        finally:
            os.killpg(pool.pid, signal.SIGTERM)
            pool.wait(timeout=120)
            runtime.engine.dispose()


def main() -> None:
    """Measure the newcomer's wait with fair admission and first come, first served."""
    fair = measure(is_fair=True)
    fifo = measure(is_fair=False)
    emit(
        "fairness.newcomer_start_s",
        fair,
        "s",
        f"<= longest running job's remaining time + 1 s (here <= {JOB_SECONDS + 1:g} s)",
    )
    emit("fairness.newcomer_start_fifo_s", fifo, "s", "printed: first come, first served")


if __name__ == "__main__":
    main()
