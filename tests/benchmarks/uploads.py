"""What checking a photo costs the API in memory: peak RSS growth per upload scenario.

    .venv/bin/python -m tests.benchmarks.uploads

Starts throwaway PostgreSQL and Redis and, for each scenario, a fresh ``python -m
backend`` (one gunicorn worker, so every upload lands in the process measured), then
posts the scenario's photos at once from one user and samples the worker's resident
memory every few milliseconds. The hostile case is issue 17's: a lossless WebP of a
few kilobytes that claims 40 megapixels, four at once.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from PIL import Image

from taskmanager.accounts import create_token, create_user
from taskmanager.db import create_db_engine, create_session_factory
from tests.benchmarks.common import Services, emit, throwaway_services

HOST = "127.0.0.1"
# How often the worker's RSS is read while uploads are checked.
SAMPLE_INTERVAL_S = 0.005


@dataclass(frozen=True)
class Scenario:
    """Photos posted at once by one user."""

    name: str
    photo: bytes
    filename: str
    copies: int


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _camera(size: tuple[int, int]) -> Image.Image:
    """Return a photo-like image: a gradient with sensor noise (JPEG sizes like a camera's)."""
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    return Image.blend(gradient, Image.effect_noise(size, 40).convert("RGB"), 0.5)


def _scenarios() -> list[Scenario]:
    # A flat colour compresses to almost nothing: the file is tiny, the pixels are not.
    flat = (40, 90, 160)
    huge_webp = _encoded(Image.new("RGB", (8000, 5000), flat), "WEBP", lossless=True)
    largest_webp = _encoded(Image.new("RGB", (6000, 4000), flat), "WEBP", lossless=True)
    phone = _encoded(_camera((4000, 3000)), "JPEG", quality=90)
    high_res = _encoded(_camera((8000, 6000)), "JPEG", quality=85)
    return [
        Scenario("webp_40mp_x4", huge_webp, "bomb.webp", 4),
        Scenario("webp_24mp_x4", largest_webp, "big.webp", 4),
        Scenario("jpeg_12mp_x1", phone, "phone.jpg", 1),
        Scenario("jpeg_48mp_x1", high_res, "high-res.jpg", 1),
    ]


def _seed(services: Services) -> str:
    """Create a user; return an API token."""
    engine = create_db_engine(services.database_url)
    sessions = create_session_factory(engine)
    user = create_user(sessions, f"bench-{uuid.uuid4().hex[:8]}@example.com", "benchmark pw")
    _, token = create_token(sessions, user.id, "bench")
    engine.dispose()
    return token


def _post(port: int, token: str, photo: bytes, filename: str) -> int:
    """Post one photo; return the status code."""
    answer = requests.post(
        f"http://{HOST}:{port}/api/v1/uploads",
        files={"file": (filename, photo)},
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    )
    return answer.status_code


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the API server exited during start-up")
        try:
            if requests.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit("the API server did not become ready within 60 s")


class RssSampler:
    """Reads the RSS of a process tree's workers in a thread; keeps the peak."""

    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        """Return the summed RSS of the server's worker processes, in bytes."""
        total = 0
        for child in self.server.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(SAMPLE_INTERVAL_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _run_scenario(services: Services, token: str, scenario: Scenario) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
    env.update(
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        CLIPYARD_DATA_DIR=str(services.root / "data"),
        CLIPYARD_LOG_LEVEL="WARNING",
        # One process: every upload lands in the one measured.
        CLIPYARD_API_WORKERS="1",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "backend", "--host", HOST, "--port", str(port)],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _wait_ready(port, server)
        small = _encoded(Image.new("RGB", (64, 48), (200, 30, 30)), "PNG")
        _post(port, token, small, "warm.png")  # Pillow's plugins, the first session
        sampler = RssSampler(server.pid)
        baseline = sampler.rss()
        statuses: Counter[int] = Counter()
        start = threading.Barrier(scenario.copies)

        def one() -> None:
            start.wait()
            statuses[_post(port, token, scenario.photo, scenario.filename)] += 1

        began = time.perf_counter()
        with sampler:
            senders = [threading.Thread(target=one) for _ in range(scenario.copies)]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
        seconds = time.perf_counter() - began
        print(
            f"# {scenario.name}: {len(scenario.photo)} bytes x{scenario.copies} -> "
            f"{json.dumps(dict(sorted(statuses.items())))}",
            file=sys.stderr,
        )
        emit(f"uploads.{scenario.name}.rss_growth_mb", (sampler.peak - baseline) / 2**20, "MB")
        emit(f"uploads.{scenario.name}.seconds", seconds, "s")
        for status, count in sorted(statuses.items()):
            emit(f"uploads.{scenario.name}.status_{status}", count, "answers")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    """Start the services, run every scenario on a fresh API process, print the figures."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    scenarios = _scenarios()
    with throwaway_services() as services:
        token = _seed(services)
        for scenario in scenarios:
            _run_scenario(services, token, scenario)


if __name__ == "__main__":
    main()
