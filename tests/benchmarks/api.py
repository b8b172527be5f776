"""API throughput and latency under the production server configuration.

    .venv/bin/python -m tests.benchmarks.api

Starts throwaway PostgreSQL and Redis, runs ``python -m backend`` (gunicorn gthread,
as in production) on 127.0.0.1, then drives ``GET /healthz`` and ``POST /api/v1/jobs``
with a keep-alive HTTP/1.1 load generator at increasing concurrency and reports the
best sustained rate of each, their ratio, and job-submit latency; finally it holds 100
Server-Sent Events clients open and submits jobs at a steady 100 requests/s. No
container runs: the API only records and enqueues, which is what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
from PIL import Image

from taskmanager.accounts import create_token, create_user
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.settings import Settings
from taskmanager.storage import create_storage
from taskmanager.uploads import store_upload
from tests.benchmarks.common import Services, emit, percentile, throwaway_services
from tests.taskmanager.factories import frame_template

HOST = "127.0.0.1"
LEVEL_SECONDS = 4.0
CONCURRENCY_LEVELS = (4, 16, 48)
SSE_CLIENTS = 100
STEADY_RATE = 100
STEADY_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(services: Services) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
    env.update(
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        CLIPYARD_DATA_DIR=str(services.root / "data"),
        # Counted like in production, but high enough never to refuse the load.
        CLIPYARD_SUBMIT_RATE_PER_MINUTE="100000000",
        CLIPYARD_LOG_LEVEL="WARNING",
    )
    return env


def _seed(services: Services) -> tuple[str, str]:
    """Create a user with a token, a template and a photo; return (token, upload id)."""
    settings = Settings(data_dir=services.root / "data")
    engine = create_db_engine(services.database_url)
    sessions = create_session_factory(engine)
    user = create_user(sessions, "bench@example.com", "benchmark password")
    _, token = create_token(sessions, user.id, "bench")
    with sessions.begin() as session:
        session.add(frame_template())
    photo = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 120, 200)).save(photo, "JPEG")
    photo.seek(0)
    upload = store_upload(
        sessions,
        create_storage(settings),
        user.id,
        photo,
        filename="p.jpg",
        max_bytes=10_000_000,
        max_pixels=10_000_000,
    )
    engine.dispose()
    return token, str(upload.id)


def _wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the API server exited during start-up")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the API server did not become ready within 60 s")


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connect to the server."""
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        """Send one request and read its whole answer; return the status code."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


def health_request() -> bytes:
    """Return a liveness probe request."""
    return f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def submit_request(token: str, upload_id: str) -> Callable[[], bytes]:
    """Return a maker of job-submit requests, each with its own idempotency key."""
    body = json.dumps({"template": "frame", "upload_id": upload_id}).encode()
    head = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )

    def make() -> bytes:
        return (head + f"Idempotency-Key: {uuid.uuid4()}\r\n\r\n").encode() + body

    return make


async def closed_loop(
    port: int, make: Callable[[], bytes], clients: int, seconds: float
) -> tuple[float, list[float], int]:
    """Run ``clients`` back-to-back senders; return (rate, latencies in ms, errors)."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def sender() -> None:
        nonlocal errors
        connection = await Connection.open(port)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status = await connection.request(make())
                latencies.append((time.perf_counter() - started) * 1000)
                errors += status >= 400
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies, errors


async def open_loop(
    port: int, make: Callable[[], bytes], rate: float, seconds: float
) -> tuple[list[float], int]:
    """Send at a steady ``rate``; latency counts from the scheduled send time."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        connection = await pool.get()
        status = await connection.request(make())
        latencies.append((time.perf_counter() - scheduled) * 1000)
        errors += status >= 400
        pool.put_nowait(connection)

    tasks = []
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    return latencies, errors


async def hold_sse_clients(port: int, token: str, job_ids: list[str]) -> list[Connection]:
    """Open one Server-Sent Events stream per job and read its first bytes."""
    streams = []
    for job_id in job_ids:
        connection = await Connection.open(port)
        connection.writer.write(
            f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await connection.reader.readuntil(b"\r\n\r\n")
        streams.append(connection)
    return streams


class CpuMeter:
    """CPU seconds used by the API's processes and by PostgreSQL's, between two reads."""

    def __init__(self, server_pid: int, postgres_dir: Path) -> None:
        self.api = psutil.Process(server_pid)
        # The postmaster is the one "postgres" process naming the data directory.
        self.postmaster = next(
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and str(postgres_dir) in " ".join(p.info["cmdline"])
        )

    @staticmethod
    def _tree_cpu_s(root: psutil.Process) -> float:
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            # A PostgreSQL backend may end between listing and reading.
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(process.cpu_times()[:2])
        return total

    def read(self) -> tuple[float, float]:
        """Return (API, PostgreSQL) CPU seconds so far."""
        return self._tree_cpu_s(self.api), self._tree_cpu_s(self.postmaster)


async def measure(port: int, token: str, upload_id: str, meter: CpuMeter) -> None:
    """Drive the server and print the figures."""
    submit = submit_request(token, upload_id)
    results: dict[str, tuple[float, list[float]]] = {}
    cpu_per_request: dict[str, tuple[float, float]] = {}
    for name, make in (("health", health_request), ("submit", submit)):
        best: tuple[float, list[float]] = (0.0, [])
        for clients in CONCURRENCY_LEVELS:
            api_before, postgres_before = meter.read()
            rate, latencies, errors = await closed_loop(port, make, clients, LEVEL_SECONDS)
            api_after, postgres_after = meter.read()
            print(f"# {name}: {clients} clients -> {rate:.0f}/s, {errors} errors", file=sys.stderr)
            if errors:
                raise SystemExit(f"{name} answered {errors} errors under load")
            if rate > best[0]:
                best = (rate, latencies)
                # Where each request's CPU goes: what bounds the rate on a small machine.
                cpu_per_request[name] = (
                    (api_after - api_before) / len(latencies) * 1000,
                    (postgres_after - postgres_before) / len(latencies) * 1000,
                )
        results[name] = best
    submit_rps, submit_latencies = results["submit"]
    health_rps = results["health"][0]
    emit("api.submit_rps", submit_rps, "requests/s")
    emit("api.health_rps", health_rps, "requests/s")
    emit("api.submit_to_health_ratio", submit_rps / health_rps, "ratio", ">= 0.5")
    emit("api.submit_p50_ms", percentile(submit_latencies, 0.5), "ms")
    emit("api.submit_p99_ms", percentile(submit_latencies, 0.99), "ms")
    for name, (api_ms, postgres_ms) in cpu_per_request.items():
        emit(f"api.{name}_api_cpu_ms", api_ms, "ms CPU per request")
        emit(f"api.{name}_postgres_cpu_ms", postgres_ms, "ms CPU per request")

    job_ids = []
    connection = await Connection.open(port)
    for _ in range(SSE_CLIENTS):
        raw = submit()
        connection.writer.write(raw)
        head = await connection.reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        job_ids.append(json.loads(await connection.reader.readexactly(length))["id"])
    connection.close()
    streams = await hold_sse_clients(port, token, job_ids)
    latencies, errors = await open_loop(port, submit, STEADY_RATE, STEADY_SECONDS)
    for stream in streams:
        stream.close()
    if errors:
        raise SystemExit(f"{errors} job submits failed at {STEADY_RATE}/s")
    emit("api.submit_p99_ms_at_100rps", percentile(latencies, 0.99), "ms", "<= 50")


def main() -> None:
    """Start everything, measure, stop everything."""
    with throwaway_services() as services:
        token, upload_id = _seed(services)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "backend", "--host", HOST, "--port", str(port)],
            env=_environment(services),
            cwd=Path(__file__).resolve().parents[2],
        )
        try:
            _wait_ready(port, server)
            meter = CpuMeter(server.pid, services.root / "postgres")
            asyncio.run(measure(port, token, upload_id, meter))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
