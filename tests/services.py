"""Throwaway servers for the test session: PostgreSQL, Redis and Azurite.

Every server here is started by the tests themselves on a Unix socket or a free
loopback port, never the machine's own services on 5432/6379.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from taskmanager.db import create_db_engine
from taskmanager.localservices import EmbeddedPostgres
from taskmanager.migrate import upgrade_database

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "tests" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
TEMPLATE_DATABASE = "clipyard_template"


def wait_until(condition: object, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")


class ThrowawayDatabases:
    """A throwaway server plus a migrated template database, cloned once per test."""

    def __init__(self, root: Path) -> None:
        self.server = EmbeddedPostgres(root / "postgres", is_throwaway=True)
        self._admin = create_db_engine(
            self.server.url_for("postgres"), pool_size=1
        ).execution_options(isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{TEMPLATE_DATABASE}"'))
        upgrade_database(self.server.url_for(TEMPLATE_DATABASE))

    def create(self, *, is_migrated: bool = True) -> str:
        """Create a fresh database (migrated, or empty) and return its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{TEMPLATE_DATABASE}"' if is_migrated else ""
        with self._admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"{template}'))
        return self.server.url_for(name)

    def drop(self, url: str) -> None:
        """Drop the database at ``url``, disconnecting anyone still on it."""
        name = sa.engine.make_url(url).database
        with self._admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def stop(self) -> None:
        """Stop the server and delete its data."""
        self._admin.dispose()
        self.server.stop()


def stop_process(
    process: subprocess.Popen[bytes], sig: int, timeout_s: float, *, is_group: bool = False
) -> None:
    """Send ``sig`` to ``process`` (or its group) and wait; after ``timeout_s``, SIGKILL."""

    def send(number: int) -> None:
        if is_group:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)

    if process.poll() is None:
        send(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Azurite:
    """Where the session's Azurite blob service listens."""

    blob_endpoint: str
    account_name: str = AZURITE_ACCOUNT
    account_key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        """Return a connection string for the Azure SDK."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )


@contextmanager
def run_azurite(workdir: Path) -> Iterator[Azurite]:
    """Start Azurite's blob service on a free port; stop it afterwards."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(
            f"Azurite is not installed at {AZURITE_BIN}: run `make test` (it runs"
            " `npm ci --prefix tests/azurite`)"
        )
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            str(AZURITE_BIN),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--silent",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,  # whatever Azurite writes lands here, not in the repository
        env={**os.environ, "AZURITE_ACCOUNTS": f"{AZURITE_ACCOUNT}:{AZURITE_KEY}"},
    )

    def is_listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode}; see {log.name}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(is_listening, 60, "Azurite listening")
        yield Azurite(blob_endpoint=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        # In-memory and throwaway: no reason to wait long for a graceful close.
        stop_process(process, signal.SIGTERM, 3)
        log.close()


@contextmanager
def run_api(env: dict[str, str], log: Path, *, threads: int = 8) -> Iterator[str]:
    """Run the API under gunicorn (``python -m backend``) on a free port; yield its URL."""
    import sys
    import urllib.request

    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--threads",
                str(threads),
            ],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def is_up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        wait_until(is_up, 60, "the API answering /healthz", interval_s=0.1)
        yield url
    finally:
        stop_process(process, signal.SIGTERM, 20, is_group=True)
