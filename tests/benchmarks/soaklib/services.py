"""Services the soak takes away and gives back: PostgreSQL, Redis and the ARM emulator."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pwd
import subprocess
import threading
import warnings
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from taskmanager.localservices import EmbeddedPostgres, EmbeddedRedis

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about an unset XDG_RUNTIME_DIR
    # pgserver makes one function per PostgreSQL binary at import time: mypy sees none.
    from pgserver import pg_ctl  # type: ignore[attr-defined]
    from pgserver.utils import PostmasterInfo


class SoakPostgres(EmbeddedPostgres):
    """The embedded PostgreSQL, plus a stop and a start that keep its data.

    ``EmbeddedPostgres`` can restart in place but not stay down: the soak needs the
    database gone for a minute and back with everything it held.
    """

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, is_throwaway=True)
        self._pgdata = data_dir.resolve()
        info = PostmasterInfo.read_from_pgdata(self._pgdata)
        if info is None or info.socket_dir is None:
            raise RuntimeError(f"no running PostgreSQL found in {self._pgdata}")
        self._socket_dir = info.socket_dir

    def _pg_ctl(self, *args: str) -> None:
        # pg_ctl refuses to run as root; pgserver then runs the server as the data's owner.
        owner = pwd.getpwuid(self._pgdata.stat().st_uid).pw_name if os.geteuid() == 0 else None
        pg_ctl(list(args), pgdata=self._pgdata, user=owner, timeout=120)

    def stop_server(self) -> None:
        """Stop the server (fast shutdown: sessions are cut), keeping its data."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_server(self) -> None:
        """Start the server again on the same socket, so every URL still works."""
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self._pgdata / "log"),
            "start",
        )

    def stop(self) -> None:
        """Stop the server however it was last started, then delete its data.

        pgserver stops only the server process it started itself; after a restart,
        or a stop and start, that process is gone and the new one would outlive it.
        """
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop_server()
        super().stop()


def start_empty_redis(data_dir: Path, url: str) -> EmbeddedRedis:
    """Start a fresh, empty redis-server that answers at ``url`` again.

    The managers and the API keep their REDIS_URL, so the new server must take the
    old one's Unix socket; it does when it is given the same data directory.
    """
    server = EmbeddedRedis(data_dir, is_throwaway=True)
    if server.url != url:
        server.stop()
        raise RuntimeError(f"the new redis-server listens at {server.url}, not {url}")
    return server


@dataclass(frozen=True)
class EmulatorAddress:
    """Where the ARM emulator answers, and the subscription and group it emulates."""

    endpoint: str
    ca_bundle: str
    subscription_id: str
    resource_group: str


def _serve_emulator(root: str, conn: Connection) -> None:
    """Run an ARM emulator and call its methods on request until told to stop."""
    from tests.armemulator import ArmEmulator

    emulator = ArmEmulator(Path(root))
    try:
        conn.send(
            EmulatorAddress(
                emulator.endpoint,
                str(emulator.ca_bundle),
                emulator.subscription_id,
                emulator.resource_group,
            )
        )
        while (request := conn.recv()) is not None:
            method, args, kwargs = request
            try:
                conn.send((True, getattr(emulator, method)(*args, **kwargs)))
            except Exception as exc:  # handed back to the caller, who raises it
                conn.send((False, repr(exc)))
    finally:
        emulator.close()
        conn.close()


class EmulatorProcess:
    """The ARM emulator in a process of its own, driven by method calls over a pipe.

    Its own process, so its HTTPS server and reaper do not share the soak's interpreter
    lock with the watcher, and its container processes are children of it, as ACI's are
    of nothing the managers own.
    """

    def __init__(self, root: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve_emulator, args=(str(root), theirs), name="armemulator"
        )
        self._process.start()
        self.address: EmulatorAddress = self._conn.recv()
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``ArmEmulator.method`` in the emulator's process and return its result."""
        with self._lock:
            self._conn.send((method, args, kwargs))
            is_ok, value = self._conn.recv()
        if not is_ok:
            raise RuntimeError(f"emulator.{method} failed: {value}")
        return value

    def close(self) -> None:
        """Stop the emulator (killing any container still running) and its process."""
        with self._lock, contextlib.suppress(OSError):
            self._conn.send(None)
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
