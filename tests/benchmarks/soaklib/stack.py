"""The whole product on one machine, each part restartable on its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests
from sqlalchemy.orm import Session

from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.localservices import EmbeddedRedis
from taskmanager.migrate import upgrade_database
from taskmanager.settings import Settings
from tests.benchmarks.soaklib.services import SoakPostgres, start_empty_redis

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
LEASE_TTL_S = float(SUPERVISION["CLIPYARD_LEASE_TTL_S"])
INTERACTIVE_MANAGERS = 2
BATCH_MANAGERS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def kill_group(pid: int, signum: int = signal.SIGKILL) -> None:
    """Signal the process group ``pid`` belongs to; quiet if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signum)


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


class Stack:
    """PostgreSQL, Redis, the API and two pools of task managers, on one machine.

    ``backend_env`` chooses where containers run (the platform's settings); ``settings``
    is the soak's own view, whose prices every process is given so all agree on money.
    """

    def __init__(self, root: Path, settings: Settings, backend_env: dict[str, str]) -> None:
        self.root = root
        self.postgres = SoakPostgres(root / "postgres")
        upgrade_database(self.postgres.url)
        self.redis = EmbeddedRedis(root / "redis", is_throwaway=True)
        self.port = _free_port()
        self.api_url = f"http://{HOST}:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
        self.env.update(
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            CLIPYARD_DATA_DIR=str(root / "data"),
            CLIPYARD_LOG_LEVEL="INFO",  # the log is kept for diagnosing a failed soak
            CLIPYARD_LOG_FORMAT="json",
            CLIPYARD_SUBMIT_RATE_PER_MINUTE="100000",
            CLIPYARD_PRICE_PER_VCPU_HOUR=str(settings.price_per_vcpu_hour),
            CLIPYARD_PRICE_PER_GB_HOUR=str(settings.price_per_gb_hour),
            CLIPYARD_SPOT_PRICE_FACTOR=str(settings.spot_price_factor),
            **SUPERVISION,
            **backend_env,
        )
        self.log_path = root / "stack.log"
        self.logs = self.log_path.open("ab")
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

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Open a short-lived session on the soak's database (raises while it is down)."""
        engine = create_db_engine(self.postgres.url, pool_size=1)
        try:
            with create_session_factory(engine)() as session:
                yield session
        finally:
            engine.dispose()

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

    def kill_api(self) -> None:
        """SIGKILL the API (gunicorn and its workers) and wait until it is gone."""
        assert self.api is not None
        kill_group(self.api.pid)
        self.api.wait()

    def start_managers(self) -> None:
        """Start the interactive pool (with the reconciler) and the batch pool."""
        clipyard = str(Path(sys.executable).parent / "clipyard")
        self.pools = [
            self._spawn(
                [clipyard, "worker", "--queues", "interactive", "-n", str(INTERACTIVE_MANAGERS)]
            ),
            self._spawn(
                [
                    clipyard,
                    "worker",
                    "--queues",
                    "batch",
                    "-n",
                    str(BATCH_MANAGERS),
                    "--no-reconcile",
                ]
            ),
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

    def restart_redis_empty(self, downtime_s: float) -> None:
        """Stop Redis (a throwaway: its data goes with it), wait, start an empty one."""
        url = self.redis.url
        self.redis.stop()
        time.sleep(downtime_s)
        self.redis = start_empty_redis(self.root / "redis", url)

    def stop(self) -> None:
        """Stop the managers gracefully, then the API, Redis and PostgreSQL."""
        for manager in self.managers():
            kill_group(manager.pid, signal.SIGCONT)  # a paused one must hear SIGTERM
        for pool in self.pools:
            pool.send_signal(signal.SIGTERM)
        for pool in self.pools:
            try:
                pool.wait(timeout=90)
            except subprocess.TimeoutExpired:
                kill_group(pool.pid)
        if self.api is not None and self.api.poll() is None:
            kill_group(self.api.pid, signal.SIGTERM)
            self.api.wait(timeout=30)
        self.redis.stop()
        self.postgres.stop()
        self.logs.close()
