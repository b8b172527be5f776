"""Orchestration benchmark: what the guarantees cost on the local backend.

Runs the real product path — the job service, TaskTiger, ``clipyard worker`` managers,
the local container backend — with the scripted stand-in container, and beside it the
floor: the same 200 commands run directly by a pool of 8.

    .venv/bin/python -m tests.benchmarks.orchestration
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import psutil
from sqlalchemy import select, text

from taskmanager.backends.local import default_images
from taskmanager.jobs import JobRequest, submit_job
from taskmanager.models import Job, JobEvent, Run
from taskmanager.settings import Settings
from taskmanager.states import TERMINAL_JOB_STATES
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.worker import build_runtime
from tests.benchmarks.common import (
    Services,
    bench_settings,
    emit,
    median,
    percentile,
    throwaway_services,
    wait_for_managers,
)
from tests.taskmanager.factories import make_owner_upload_template

JOBS = 200
CONCURRENCY = 8
JOB_SECONDS = 1.0
LATENCY_JOBS = 30
ADOPTION_TRIALS = 5
TERMINAL = {state.value for state in TERMINAL_JOB_STATES}


def _environment(settings: Settings, services: Services) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
    env.update(
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        CLIPYARD_DATA_DIR=str(settings.data_dir),
        CLIPYARD_ALLOW_FAKE_JOBS="true",
        CLIPYARD_LOG_LEVEL="WARNING",
    )
    return env


def _seed(runtime: Runtime) -> tuple[uuid.UUID, uuid.UUID]:
    with runtime.sessions.begin() as session:
        return make_owner_upload_template(session, "bench", duration_s=1.0)


def _submit(runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID], **fake: object) -> uuid.UUID:
    request = JobRequest(
        owner_id=owner[0], template_name="bench", upload_id=owner[1], params={"fake": fake}
    )
    job, _ = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
    return job.id


def _wait_terminal(runtime: Runtime, job_ids: list[uuid.UUID], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with runtime.sessions() as session:
            unfinished = session.scalar(
                select(Job.id).where(Job.id.in_(job_ids), Job.state.not_in(TERMINAL)).limit(1)
            )
        if unfinished is None:
            return
        time.sleep(0.02)
    raise TimeoutError(f"jobs not finished within {timeout_s} s")


def measure_floor() -> float:
    """Run the same commands directly with a pool of 8; return the wall time."""
    command = [*default_images()["fake"], "--seconds", str(JOB_SECONDS)]
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(
            pool.map(
                lambda _: subprocess.run(command, stdout=subprocess.DEVNULL, check=True),
                range(JOBS),
            )
        )
    return time.monotonic() - started


class ManagerSampler:
    """Sample the task managers' memory and CPU while they supervise runs.

    Managers run supervisors in-process (TaskTiger's SyncExecutor), so a busy
    manager's own RSS is the memory one concurrently supervised run costs.
    """

    def __init__(self, worker_pid: int) -> None:
        self.root = psutil.Process(worker_pid)
        self.rss_mb: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu_s = 0.0

    def _managers(self) -> list[psutil.Process]:
        return [
            p
            for p in self.root.children()
            if "taskmanager.supervision.worker" in " ".join(p.cmdline())
        ]

    def _cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self._managers())

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for manager in self._managers():
                try:
                    self.rss_mb.append(manager.memory_info().rss / 2**20)
                except psutil.NoSuchProcess:
                    continue

    def __enter__(self) -> ManagerSampler:
        self._cpu_before = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = self._cpu() - self._cpu_before


def measure_latencies(
    runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID]
) -> tuple[list[float], list[float]]:
    """Run jobs one at a time; return submit→start and exit→terminal latencies."""
    starts, finishes = [], []
    for _ in range(LATENCY_JOBS):
        job_id = _submit(runtime, owner, seconds=0.2, steps=2)
        _wait_terminal(runtime, [job_id], 60)
        with runtime.sessions() as session:
            job = session.get_one(Job, job_id)
            run = session.scalars(select(Run).where(Run.job_id == job_id)).one()
            assert run.started_at is not None
            assert run.finished_at is not None
            assert job.finished_at is not None
            starts.append((run.started_at - job.created_at).total_seconds())
            finishes.append((job.finished_at - run.finished_at).total_seconds())
    return starts, finishes


def _owner_pid(runtime: Runtime, job_id: uuid.UUID, timeout_s: float = 60) -> int:
    """Wait until the job's run is running; return its manager's pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with runtime.sessions() as session:
            run = session.scalars(select(Run).where(Run.job_id == job_id)).first()
            if run is not None and run.state == "running" and run.lease_owner:
                return int(run.lease_owner.split(":")[1])
        time.sleep(0.02)
    raise TimeoutError("the job never started")


def _adopted_at(runtime: Runtime, job_id: uuid.UUID, since: float, timeout_s: float = 120) -> float:
    """Wait for the job's ``adopted`` event; return its time (epoch seconds)."""
    while True:
        with runtime.sessions() as session:
            adopted = session.scalars(
                select(JobEvent.created_at).where(
                    JobEvent.job_id == job_id, JobEvent.kind == "adopted"
                )
            ).first()
        if adopted is not None:
            return adopted.timestamp()
        if time.time() - since > timeout_s:
            raise TimeoutError("no manager adopted the run")
        time.sleep(0.02)


def _finish(runtime: Runtime, job_ids: list[uuid.UUID]) -> None:
    from taskmanager.jobs import cancel_job

    for job_id in job_ids:
        cancel_job(runtime.sessions, job_id)
    _wait_terminal(runtime, job_ids, 120)


def measure_adoption(runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID]) -> float:
    """SIGKILL the manager supervising a run; return seconds until another adopts it."""
    job_id = _submit(runtime, owner, seconds=600, steps=600)
    pid = _owner_pid(runtime, job_id)
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    killed_at = time.time()
    adopted_at = _adopted_at(runtime, job_id, killed_at)
    _finish(runtime, [job_id])
    return adopted_at - killed_at


def measure_freeze(runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID]) -> tuple[float, int]:
    """SIGSTOP the supervising manager; return (seconds to adoption, containers started)."""
    job_id = _submit(runtime, owner, seconds=40, steps=40)
    pid = _owner_pid(runtime, job_id)
    os.killpg(os.getpgid(pid), signal.SIGSTOP)
    frozen_at = time.time()
    try:
        adopted_at = _adopted_at(runtime, job_id, frozen_at)
    finally:
        os.killpg(os.getpgid(pid), signal.SIGCONT)
    time.sleep(3)  # the resumed manager's next step: it must notice and touch nothing
    # Containers are directories on the local backend: count this job's, not its rows.
    containers = len(list(Path(runtime.settings.data_dir, "containers").glob(f"cy-{job_id.hex}-*")))
    _finish(runtime, [job_id])
    return adopted_at - frozen_at, containers


def _start_pool(env: dict[str, str], log: IO[bytes], processes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "clipyard"), "worker", "-n", str(processes)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_pool(pool: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> None:
    """Signal a ``clipyard worker`` and every manager it started (each in its own group)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pool.pid).children():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signum)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pool.pid, signum)
    pool.wait(timeout=90)


def measure_pool_kill(
    runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID], env: dict[str, str], log: IO[bytes]
) -> float:
    """Two pools of one manager; SIGKILL the whole pool whose manager runs the job."""
    pools = [_start_pool(env, log, 1) for _ in range(2)]
    try:
        wait_for_managers(runtime.enqueuer.tiger, 2)  # type: ignore[attr-defined]
        job_id = _submit(runtime, owner, seconds=600, steps=600)
        pid = _owner_pid(runtime, job_id)
        doomed = next(p for p in pools if pid in [c.pid for c in psutil.Process(p.pid).children()])
        killed_at = time.time()
        _kill_pool(doomed)
        adopted_at = _adopted_at(runtime, job_id, killed_at)
        _finish(runtime, [job_id])
    finally:
        for pool in pools:
            if pool.poll() is None:
                _kill_pool(pool, signal.SIGTERM)
    return adopted_at - killed_at


def measure_busy(
    runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID], env: dict[str, str], log: IO[bytes]
) -> float:
    """A pool of two, both busy with long runs; SIGKILL one manager."""
    pool = _start_pool(env, log, 2)
    try:
        wait_for_managers(runtime.enqueuer.tiger, 2)  # type: ignore[attr-defined]
        job_ids = [_submit(runtime, owner, seconds=600, steps=600) for _ in range(2)]
        pid = _owner_pid(runtime, job_ids[0])
        _owner_pid(runtime, job_ids[1])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        adopted_at = _adopted_at(runtime, job_ids[0], killed_at)
        _finish(runtime, job_ids)
    finally:
        _kill_pool(pool, signal.SIGTERM)
    return adopted_at - killed_at


def measure_liveness_load(
    runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID], window_s: float = 10.0
) -> tuple[float, float]:
    """Return the database's transactions per second with the pool idle, then busy.

    Idle: the 8 managers and their pool wait for work (presence locks, liveness passes,
    the reconciler). Busy: 8 long runs, each heartbeating as it is watched.
    """

    def rate() -> float:
        query = text(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        with runtime.engine.connect() as connection:
            before = connection.execute(query).scalar_one()
            connection.commit()
            time.sleep(window_s)
            after = connection.execute(query).scalar_one()
        return float(after - before - 2) / window_s  # our own two reads left out

    time.sleep(2)
    idle = rate()
    job_ids = [_submit(runtime, owner, seconds=600, steps=60) for _ in range(CONCURRENCY)]
    for job_id in job_ids:
        _owner_pid(runtime, job_id)
    busy = rate()
    _finish(runtime, job_ids)
    return idle, busy


def measure_kill_lateness(runtime: Runtime, owner: tuple[uuid.UUID, uuid.UUID]) -> float:
    """Run past a 2 s deadline; return how late after the deadline the container ended."""
    request = JobRequest(
        owner_id=owner[0],
        template_name="bench",
        upload_id=owner[1],
        params={"fake": {"seconds": 60}},
        max_runtime_s=2,
    )
    job, _ = submit_job(runtime.sessions, runtime.enqueuer, runtime.settings, request)
    _wait_terminal(runtime, [job.id], 60)
    with runtime.sessions() as session:
        run = session.scalars(select(Run).where(Run.job_id == job.id)).one()
        assert run.state == "timed_out", run.state
        assert run.launched_at is not None
        assert run.finished_at is not None
        # The deadline is on the billed window, which starts at the launch request.
        return (run.finished_at - run.launched_at).total_seconds() - 2


def main() -> None:
    """Measure and print every figure."""
    floor_s = measure_floor()
    with throwaway_services() as services:
        settings = bench_settings(services)
        runtime = build_runtime(settings, services.database_url, services.redis_url)
        owner = _seed(runtime)
        log = (services.root / "workers.log").open("wb")
        workers = subprocess.Popen(
            [str(Path(sys.executable).parent / "clipyard"), "worker", "-n", str(CONCURRENCY)],
            env=_environment(settings, services),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_managers(runtime.enqueuer.tiger, CONCURRENCY)  # type: ignore[attr-defined]
            with ManagerSampler(workers.pid) as sampler:
                started = time.monotonic()
                job_ids = [_submit(runtime, owner, seconds=JOB_SECONDS) for _ in range(JOBS)]
                _wait_terminal(runtime, job_ids, 600)
                system_s = time.monotonic() - started
            starts, finishes = measure_latencies(runtime, owner)
            kill_lateness = measure_kill_lateness(runtime, owner)
            idle_tps, busy_tps = measure_liveness_load(runtime, owner)
            adoptions = [measure_adoption(runtime, owner) for _ in range(ADOPTION_TRIALS)]
            freeze_s, freeze_containers = measure_freeze(runtime, owner)
        finally:
            _kill_pool(workers, signal.SIGTERM)
        try:
            env = _environment(settings, services)
            pool_kill = measure_pool_kill(runtime, owner, env, log)
            busy = measure_busy(runtime, owner, env, log)
        finally:
            runtime.engine.dispose()
    emit("orchestration.overhead_ratio", system_s / floor_s, "ratio", "<= 1.10")
    emit(
        "orchestration.system_s",
        system_s,
        "s",
        f"{JOBS} jobs of {JOB_SECONDS:g} s at {CONCURRENCY}",
    )
    emit("orchestration.floor_s", floor_s, "s", f"{JOBS} commands, pool of {CONCURRENCY}")
    emit("orchestration.start_latency_p50_s", median(starts), "s", "<= 0.15")
    emit("orchestration.start_latency_p99_s", percentile(starts, 0.99), "s", "<= 0.5")
    emit("orchestration.finish_latency_p50_s", median(finishes), "s", "<= 0.15")
    emit("orchestration.finish_latency_p99_s", percentile(finishes, 0.99), "s", "<= 0.5")
    for trial, seconds in enumerate(adoptions, 1):
        print(f"# adoption after SIGKILL, trial {trial}: {seconds:.2f} s", file=sys.stderr)
    emit("orchestration.adoption_s", median(adoptions), "s", "<= 3 (median of trials)")
    emit("orchestration.adoption_pool_kill_s", pool_kill, "s", "<= 3")
    ttl = settings.lease_ttl_s
    emit("orchestration.lease_ttl_s", ttl, "s", "default, <= 15")
    emit("orchestration.adoption_freeze_s", freeze_s, "s", f"<= {ttl + 2:g} (lease TTL + 2 s)")
    emit("orchestration.adoption_freeze_containers", freeze_containers, "containers", "1")
    emit("orchestration.adoption_busy_s", busy, "s", "<= 3")
    emit(
        "orchestration.liveness_queries_per_s",
        idle_tps,
        "transactions/s",
        f"printed: the whole idle pool ({CONCURRENCY} managers, liveness and reconciler)",
    )
    emit(
        "orchestration.liveness_queries_per_idle_manager_s",
        idle_tps / CONCURRENCY,
        "transactions/s",
        "printed",
    )
    emit(
        "orchestration.queries_per_running_job_s",
        (busy_tps - idle_tps) / CONCURRENCY,
        "transactions/s",
        f"printed (heartbeats every {settings.poll_interval_s:g} s)",
    )
    emit(
        "orchestration.kill_lateness_s", kill_lateness, "s", f"<= {settings.poll_interval_s + 1:g}"
    )
    emit(
        "orchestration.rss_per_run_mb",
        median(sampler.rss_mb),
        "MB",
        "printed (one manager process per supervised run; no forked child)",
    )
    emit("orchestration.manager_cpu_s_per_job", sampler.cpu_s / JOBS, "s", "printed")


if __name__ == "__main__":
    main()
