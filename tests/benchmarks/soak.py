"""The whole system under faults: real composites while its parts are killed and restarted.

    .venv/bin/python -m tests.benchmarks.soak

On the local stack (embedded PostgreSQL and Redis, ``python -m backend``, two
``clipyard worker`` pools with the reconciler, the local container backend, the real
compositor on the small ``postcard`` template) an operator submits a 200-row batch and a
user 20 interactive jobs through the API, while a fault injector, at random moments,
SIGKILLs a task manager's process group, kills and restarts the API, restarts Redis with
its data gone, restarts PostgreSQL and SIGKILLs a running container. Clients retry as
real ones do (same row ids and idempotency keys). Then everything drains and is checked:
jobs lost, jobs stuck, duplicates, leaked containers, undecodable outputs, overspend and
the time to drain. A watcher samples the compositor processes all along, so a job that
ever had two containers at once counts as a duplicate even if the database never knew.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import av
import psutil
import requests
from PIL import Image
from sqlalchemy import func, select

from jobimages.builder import build_templates
from taskmanager.accounts import create_token, create_user
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.localservices import EmbeddedPostgres, EmbeddedRedis
from taskmanager.migrate import upgrade_database
from taskmanager.models import Batch, Job, Run
from taskmanager.settings import Settings
from taskmanager.states import TERMINAL_JOB_STATES
from taskmanager.storage import create_storage
from taskmanager.templates import load_templates
from tests.benchmarks.common import emit

BATCH_ROWS = 200
INTERACTIVE_JOBS = 20
BUDGET_USD = Decimal("1.00")
FAULT_GAP_S = (5.0, 12.0)
DRAIN_DEADLINE_S = 900.0
SEED = 20261124
TERMINAL = {state.value for state in TERMINAL_JOB_STATES}
LIVE_RUN_STATES = ("pending", "launching", "running")
HOST = "127.0.0.1"
# Fast supervision, as a small deployment tuned for quick recovery would run it.
SUPERVISION = {
    "CLIPYARD_LEASE_TTL_S": "4",
    "CLIPYARD_POLL_INTERVAL_S": "0.5",
    "CLIPYARD_RECONCILE_INTERVAL_S": "2",
    "CLIPYARD_RETRY_BASE_DELAY_S": "0.5",
    "CLIPYARD_RETRY_MAX_DELAY_S": "4",
    "CLIPYARD_ADMISSION_RETRY_S": "0.5",
    "CLIPYARD_STOP_GRACE_S": "2",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _kill_group(pid: int, signum: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signum)


class Stack:
    """Every part of the product, each restartable on its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres = EmbeddedPostgres(root / "postgres", is_throwaway=True)
        upgrade_database(self.postgres.url)
        self.redis = EmbeddedRedis(root / "redis", is_throwaway=True)
        self.port = _free_port()
        self.api_url = f"http://{HOST}:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
        self.env.update(
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            CLIPYARD_DATA_DIR=str(root / "data"),
            CLIPYARD_LOG_LEVEL="WARNING",
            CLIPYARD_SUBMIT_RATE_PER_MINUTE="100000",
            **SUPERVISION,
        )
        self.logs = (root / "stack.log").open("ab")
        self.api: subprocess.Popen[bytes] | None = None
        self.pools: list[subprocess.Popen[bytes]] = []

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            env=self.env,
            stdout=self.logs,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_api(self) -> None:
        """Start the API and wait until it answers."""
        self.api = self._spawn([sys.executable, "-m", "backend", "--port", str(self.port)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.api_url}/healthz", timeout=1).ok:
                    return
            time.sleep(0.2)
        raise SystemExit("the API did not start within 60 s")

    def start_managers(self) -> None:
        """Start the interactive pool (with the reconciler) and the batch pool."""
        clipyard = str(Path(sys.executable).parent / "clipyard")
        self.pools = [
            self._spawn([clipyard, "worker", "--queues", "interactive", "-n", "2"]),
            self._spawn([clipyard, "worker", "--queues", "batch", "-n", "4", "--no-reconcile"]),
        ]

    def managers(self) -> list[psutil.Process]:
        """Return the task-manager processes (the pools restart any that die)."""
        found = []
        for pool in self.pools:
            with contextlib.suppress(psutil.NoSuchProcess):
                found += [
                    child
                    for child in psutil.Process(pool.pid).children()
                    if "taskmanager.supervision.worker" in " ".join(child.cmdline())
                ]
        return found

    def stop(self) -> None:
        """Stop the managers gracefully, then the API, Redis and PostgreSQL."""
        for pool in self.pools:
            pool.send_signal(signal.SIGTERM)
        for pool in self.pools:
            try:
                pool.wait(timeout=90)
            except subprocess.TimeoutExpired:
                _kill_group(pool.pid)
        if self.api is not None:
            _kill_group(self.api.pid, signal.SIGTERM)
            self.api.wait(timeout=30)
        self.redis.stop()
        self.postgres.stop()
        self.logs.close()


def compositor_processes() -> dict[int, str]:
    """Return {pid: job id} of every running compositor (read from its output URL)."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if not any(part.endswith("clipyard-composite") for part in cmdline[:2]):
            continue
        with contextlib.suppress(psutil.Error):
            url = process.environ().get("CLIPYARD_OUTPUT_URL", "")
            if "/outputs/" in url:
                found[process.pid] = url.split("/outputs/", 1)[1].split("/", 1)[0]
    return found


@dataclass
class Watcher:
    """Samples the compositors all along: jobs ever seen with two containers at once."""

    doubled: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop.wait(0.1):
            per_job: dict[str, int] = defaultdict(int)
            for job_id in compositor_processes().values():
                per_job[job_id] += 1
            self.seen.update(per_job)
            self.doubled.update(job for job, count in per_job.items() if count > 1)


class Client:
    """An API client that retries as a real one would: same keys, until answered."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send until a non-5xx answer arrives (the API or a service may be restarting)."""
        deadline = time.monotonic() + 300
        while True:
            try:
                answer = self.http.request(method, f"{self.base}{path}", timeout=10, **kwargs)
                if answer.status_code < 500:
                    answer.raise_for_status()
                    return answer.json()
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{method} {path} got no answer within 300 s")
            time.sleep(0.5)


def _photo(colour: tuple[int, int, int]) -> tuple[str, bytes]:
    data = io.BytesIO()
    Image.new("RGB", (800, 600), colour).save(data, "JPEG")
    return "photo.jpg", data.getvalue()


def seed(stack: Stack) -> tuple[Client, Client]:
    """Load the template and create an operator and a user; return their API clients."""
    settings = Settings(data_dir=stack.root / "data")
    folder = stack.root / "templates"
    build_templates(folder, names=["postcard"])
    engine = create_db_engine(stack.postgres.url, pool_size=1)
    sessions = create_session_factory(engine)
    load_templates(sessions, create_storage(settings), folder)
    tokens = []
    for email, role in (("ops@soak.test", "operator"), ("user@soak.test", "user")):
        account = create_user(sessions, email, "soak password 1", role=role)
        tokens.append(create_token(sessions, account.id, "soak")[1])
    engine.dispose()
    return Client(stack.api_url, tokens[0]), Client(stack.api_url, tokens[1])


def submit_all(operator: Client, user: Client, accepted: list[str]) -> None:
    """Submit the batch's rows and, spread among them, the interactive jobs."""
    batch = operator.call(
        "POST",
        "/api/v1/batches",
        json={"name": "soak", "budget_usd": str(BUDGET_USD), "max_concurrent": 4},
    )
    ops_photo = operator.call("POST", "/api/v1/uploads", files={"file": _photo((200, 60, 40))})
    user_photo = user.call("POST", "/api/v1/uploads", files={"file": _photo((40, 90, 200))})
    every = BATCH_ROWS // INTERACTIVE_JOBS
    for row in range(BATCH_ROWS):
        job = operator.call(
            "POST",
            "/api/v1/jobs",
            json={
                "template": "postcard",
                "upload_id": ops_photo["id"],
                "batch_id": batch["id"],
                "row_id": f"row-{row}",
            },
        )
        accepted.append(job["id"])
        if row % every == 0:
            job = user.call(
                "POST",
                "/api/v1/jobs",
                headers={"Idempotency-Key": f"soak-{row}"},
                json={"template": "postcard", "upload_id": user_photo["id"]},
            )
            accepted.append(job["id"])
        time.sleep(0.3)  # a steady stream, so faults land while jobs arrive and run


class FaultInjector:
    """Injects one fault at a time at random moments; every kind at least twice."""

    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self.stack = stack
        self.rng = rng
        self.kinds: dict[str, Callable[[], bool]] = {
            "kill_manager": self.kill_manager,
            "restart_api": self.restart_api,
            "flush_redis": self.flush_redis,
            "restart_postgres": self.restart_postgres,
            "kill_container": self.kill_container,
        }
        self.done: list[str] = []
        self.skipped: list[str] = []

    def kill_manager(self) -> bool:
        managers = self.stack.managers()
        if not managers:
            return False
        _kill_group(self.rng.choice(managers).pid)
        return True

    def restart_api(self) -> bool:
        assert self.stack.api is not None
        _kill_group(self.stack.api.pid)
        self.stack.api.wait()
        self.stack.start_api()
        return True

    def flush_redis(self) -> bool:
        self.stack.redis.stop()  # a throwaway server: its data is deleted with it
        self.stack.redis = EmbeddedRedis(self.stack.root / "redis", is_throwaway=True)
        return True

    def restart_postgres(self) -> bool:
        self.stack.postgres.restart()
        return True

    def kill_container(self) -> bool:
        running = list(compositor_processes())
        if not running:
            return False
        _kill_group(self.rng.choice(running))
        return True

    def run(self, is_submitting: Callable[[], bool]) -> None:
        """Inject every kind twice, and more at random while jobs are still being submitted."""
        plan = [kind for kind in self.kinds for _ in range(2)]
        self.rng.shuffle(plan)
        while plan or is_submitting():
            time.sleep(self.rng.uniform(*FAULT_GAP_S))
            kind = plan.pop() if plan else self.rng.choice(list(self.kinds))
            if self.kinds[kind]():
                self.done.append(kind)
                print(f"# fault: {kind}", file=sys.stderr, flush=True)
            elif is_submitting():
                plan.append(kind)  # nothing to hit right now: try this one again later
            else:
                self.skipped.append(kind)  # the work is nearly done: nothing left to hit


def wait_drained(stack: Stack, job_ids: list[str]) -> float:
    """Wait until every job is terminal (or the deadline); return the seconds waited."""
    engine = create_db_engine(stack.postgres.url, pool_size=1)
    started = time.monotonic()
    try:
        while time.monotonic() - started < DRAIN_DEADLINE_S:
            with create_session_factory(engine)() as session:
                unfinished = session.scalar(
                    select(func.count()).where(Job.id.in_(job_ids), Job.state.not_in(TERMINAL))
                )
            if unfinished == 0:
                break
            time.sleep(1.0)
    finally:
        engine.dispose()
    return time.monotonic() - started


def _is_playable(path: Path, frames: int) -> bool:
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0)) == frames
    except (av.FFmpegError, OSError):
        return False


def check(stack: Stack, accepted: list[str], watcher: Watcher) -> dict[str, float]:
    """Count what went wrong."""
    engine = create_db_engine(stack.postgres.url, pool_size=1)
    with create_session_factory(engine)() as session:
        jobs = {str(job.id): job for job in session.scalars(select(Job))}
        runs = list(session.scalars(select(Run)))
        batch = session.scalars(select(Batch)).one()
    engine.dispose()
    attempts: dict[tuple[str, int], int] = defaultdict(int)
    for run in runs:
        attempts[(str(run.job_id), run.attempt)] += 1
    doubled = {job for (job, _), count in attempts.items() if count > 1} | watcher.doubled
    rows: dict[str | None, int] = defaultdict(int)
    for job in jobs.values():
        if job.batch_id is not None:
            rows[job.row_id] += 1
    blobs = stack.root / "data" / "blobs"
    bad = sum(
        not _is_playable(blobs / job.output_key, 30)
        for job in jobs.values()
        if job.state == "succeeded" and job.output_key
    )
    live_runs = sum(run.state in LIVE_RUN_STATES for run in runs)
    containers = stack.root / "data" / "containers"
    leaked_dirs = [d for d in containers.iterdir()] if containers.is_dir() else []
    states: dict[str, int] = defaultdict(int)
    for job in jobs.values():
        states[job.state] += 1
    print(f"# jobs by state: {dict(states)}; runs: {len(runs)}", file=sys.stderr)
    return {
        "lost": len(set(accepted) - set(jobs)) + (BATCH_ROWS - len(rows)),
        "stuck": sum(job.state not in TERMINAL for job in jobs.values()),
        "duplicates": len(doubled) + sum(count - 1 for count in rows.values()),
        "leaked": live_runs + len(compositor_processes()) + len(leaked_dirs),
        "bad_outputs": bad,
        "overspend": float(max(Decimal(0), batch.spent_usd - batch.budget_usd)),
        "spent": float(batch.spent_usd),
    }


def main() -> None:
    """Run the soak and print its figures."""
    import tempfile

    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="clipyard-soak-") as directory:
        stack = Stack(Path(directory))
        try:
            operator, user = seed(stack)
            stack.start_api()
            stack.start_managers()
            watcher = Watcher()
            threading.Thread(target=watcher.run, daemon=True).start()
            accepted: list[str] = []
            failures: list[BaseException] = []

            def submit() -> None:
                try:
                    submit_all(operator, user, accepted)
                except BaseException as exc:  # reported below; the faults stop early
                    failures.append(exc)

            submitter = threading.Thread(target=submit)
            submitter.start()
            injector = FaultInjector(stack, rng)
            injector.run(is_submitting=lambda: submitter.is_alive())
            submitter.join()
            if failures:
                raise SystemExit(f"submitting failed: {failures[0]!r}")
            print(
                f"# faults injected: {injector.done}; found nothing to hit: {injector.skipped}",
                file=sys.stderr,
            )
            drain_s = wait_drained(stack, accepted)
            # Let the janitor finish removing finished containers before counting leaks.
            time.sleep(10)
            watcher.stop.set()
            found = check(stack, accepted, watcher)
        finally:
            stack.stop()
    emit("soak.jobs_lost", found["lost"], "jobs", "0")
    emit("soak.jobs_stuck", found["stuck"], "jobs", "0")
    emit("soak.duplicates", found["duplicates"], "jobs", "0")
    emit("soak.leaked_containers", found["leaked"], "containers", "0")
    emit("soak.bad_outputs", found["bad_outputs"], "outputs", "0")
    emit("soak.overspend_usd", found["overspend"], "USD", "0 (spend within the budget)")
    emit("soak.spent_usd", found["spent"], "USD", f"<= {BUDGET_USD}")
    emit("soak.drain_s", drain_s, "s", "after the last fault")


if __name__ == "__main__":
    main()
