"""Benchmark the aci backend's overhead: SDK calls per poll and manager CPU per job.

Drives 100 fake one-second containers at concurrency 8 through the backend the way the
supervisor does (look, launch, poll status and logs every poll interval, remove)
against the ARM emulator with no provisioning delay. The emulator runs in its own
process so the CPU figure is the manager's alone.

Run: .venv/bin/python -m tests.benchmarks.aci
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from taskmanager.backends.aci import AciBackend
from taskmanager.backends.aci_factory import create_aci_backend
from taskmanager.backends.base import ContainerSpec, ContainerState
from taskmanager.localservices import EmbeddedRedis
from taskmanager.logs import configure_logging
from taskmanager.settings import Settings
from tests.benchmarks.common import emit

JOBS = 100
CONCURRENCY = 8
POLL_INTERVAL_S = 0.2


def _serve_emulator(root: str, conn: Connection) -> None:
    from tests.armemulator import ArmEmulator

    emulator = ArmEmulator(Path(root))
    conn.send(
        (
            emulator.endpoint,
            str(emulator.ca_bundle),
            emulator.subscription_id,
            emulator.resource_group,
        )
    )
    conn.recv()  # told to stop
    conn.send(dict(emulator.requests))
    emulator.close()


def _run_job(backend: AciBackend, index: int) -> int:
    """Supervise one job; return how many polls it took."""
    name = f"bench-{index:03d}"
    spec = ContainerSpec(
        name=name,
        image="fake",
        args=["--seconds", "1", "--steps", "4"],
        cpu=Decimal(1),
        memory_gb=Decimal(1),
        tags={"app": "clipyard", "job_id": name, "attempt": "1"},
    )
    if backend.status(name).state is ContainerState.NOT_FOUND:
        backend.launch(spec)
    cursor, polls = 0, 0
    while True:
        polls += 1
        status = backend.status(name)
        _, cursor = backend.logs_since(name, cursor)
        if status.is_finished:
            backend.logs_since(name, cursor)
            break
        backend.wait(name, POLL_INTERVAL_S)
    backend.remove(name)
    return polls


def main() -> None:
    """Run the benchmark and print its figures."""
    configure_logging("WARNING")  # stdout carries only the figures
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="clipyard-bench-aci-") as directory:
        root = Path(directory)
        redis_server = EmbeddedRedis(root / "redis", is_throwaway=True)
        ours, theirs = context.Pipe()
        emulator = context.Process(target=_serve_emulator, args=(str(root / "arm"), theirs))
        emulator.start()
        try:
            endpoint, ca_bundle, subscription_id, resource_group = ours.recv()
            fields: dict[str, Any] = {
                "container_backend": "aci",
                "aci_subscription_id": subscription_id,
                "aci_resource_group": resource_group,
                "aci_arm_endpoint": endpoint,
                "aci_ca_bundle": ca_bundle,
                "aci_static_token": SecretStr("bench"),
                "aci_lro_poll_interval_s": 0.05,
                "poll_interval_s": POLL_INTERVAL_S,
            }
            backend = create_aci_backend(Settings(**fields), redis_url=redis_server.url)
            cpu_before, wall_before = time.process_time(), time.monotonic()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                polls = sum(pool.map(lambda i: _run_job(backend, i), range(JOBS)))
            cpu = time.process_time() - cpu_before
            wall = time.monotonic() - wall_before
            ours.send("stop")
            requests: dict[str, int] = ours.recv()
        finally:
            emulator.join(30)
            redis_server.stop()
    calls = sum(requests.values())
    # Outside the polls, each job costs a constant: the supervisor's look and launch's
    # own look (2 GETs), the create, the last logs read, the delete and its operation.
    constant = 2 * JOBS + requests.get("create", 0) + JOBS + requests.get("delete", 0)
    constant += requests.get("operation", 0)
    emit(
        "aci.sdk_calls_per_poll",
        (calls - constant) / polls,
        "calls/poll",
        "<= 2 per poll interval per running job plus a constant",
    )
    emit("aci.sdk_calls_per_job_constant", constant / JOBS, "calls/job", "a small constant")
    emit("aci.sdk_calls_per_poll_all_in", calls / polls, "calls/poll", "constants included")
    emit("aci.cpu_s_per_job", cpu / JOBS, "s", "")
    emit("aci.wall_s", wall, "s", f"{JOBS} jobs of 1 s at concurrency {CONCURRENCY}")
    print(f"# requests by kind: {requests}; polls: {polls}", flush=True)


if __name__ == "__main__":
    main()
