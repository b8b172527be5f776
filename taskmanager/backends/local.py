"""The local backend: each container is a detached process group on this machine.

A run directory per container holds its spec, log, pid files and exit code (see
``localshim.sh``), so any manager — including one started after the launching manager
died — can find, watch, stop and remove it by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from taskmanager.backends.base import (
    BackendError,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
)

SHIM = Path(__file__).with_name("localshim.sh")
# A launch that has not written its pid within this long has failed to start.
_START_TIMEOUT_S = 30.0
# The environment variable naming the container in its own processes: the identity a
# stop checks before it signals a recorded process group.
_MARK = "CLIPYARD_LOCAL_CONTAINER"
_MAX_LOG_CHUNK = 4 * 1024 * 1024


def default_images() -> dict[str, list[str]]:
    """Map image names to the local commands that stand in for them."""
    bin_dir = Path(sys.executable).parent
    return {
        "clipyard/compositor": [str(bin_dir / "clipyard-composite")],
        "fake": ["/bin/sh", str(Path(__file__).with_name("fakeimage.sh"))],
    }


class LocalBackend:
    """A ``ContainerBackend`` whose containers are local process groups."""

    name = "local"

    def __init__(self, root: Path, images: dict[str, list[str]] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.images = images if images is not None else default_images()
        self._launchers: list[subprocess.Popen[bytes]] = []

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid container name {name!r}")
        return self.root / name

    def launch(self, spec: ContainerSpec) -> None:
        """Start the container named spec.name; adopt it quietly if it already exists."""
        if spec.image not in self.images:
            raise BackendError(f"image {spec.image!r} is not known here", is_retryable=False)
        run_dir = self._dir(spec.name)
        try:
            run_dir.mkdir()  # atomic: a second launcher finds it taken and adopts
        except FileExistsError:
            return
        record = asdict(spec)
        record["cpu"], record["memory_gb"] = str(spec.cpu), str(spec.memory_gb)
        record.pop("secure_env")
        record.pop("env")
        record["created_at"] = time.time()
        (run_dir / "spec.json").write_text(json.dumps(record))
        command = [*self.images[spec.image], *spec.args]
        # The shim gets the container's environment directly (secrets never touch a file)
        # and a session of its own; it is reaped on a later launch, not waited for.
        self._launchers = [p for p in self._launchers if p.poll() is None]
        self._launchers.append(
            subprocess.Popen(
                ["/bin/bash", str(SHIM), str(run_dir), *command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **spec.env, **spec.secure_env, _MARK: spec.name},
                start_new_session=True,
            )
        )

    def status(self, name: str) -> ContainerStatus:
        """Return the container's state (NOT_FOUND if it does not exist)."""
        run_dir = self._dir(name)
        if not run_dir.is_dir():
            return ContainerStatus(ContainerState.NOT_FOUND)
        started_at = _read_time(run_dir / "started_at")
        exit_text = _read(run_dir / "exit_code")
        if exit_text:
            code = int(exit_text)
            return ContainerStatus(
                ContainerState.EXITED,
                exit_code=code,
                started_at=started_at,
                finished_at=_read_time(run_dir / "finished_at"),
                detail=_detail_for(code, run_dir),
                cpu_seconds=_children_cpu_seconds(_read(run_dir / "times")),
            )
        pid = _read_int(run_dir / "shim.pid")
        if pid is None:
            # Not started yet; the launch has failed if it stays like this too long.
            created_at = json.loads(_read(run_dir / "spec.json") or "{}").get("created_at", 0)
            if time.time() - created_at < _START_TIMEOUT_S:
                return ContainerStatus(ContainerState.PENDING)
            return ContainerStatus(ContainerState.LOST, detail="never started")
        if _is_alive(pid, run_dir):
            state = ContainerState.RUNNING if started_at else ContainerState.PENDING
            return ContainerStatus(state, started_at=started_at)
        # The shim writes the exit code just before exiting: look once more.
        if _has_exited(run_dir):
            return self.status(name)
        return ContainerStatus(ContainerState.LOST, started_at=started_at, detail="vanished")

    def wait(self, name: str, timeout_s: float) -> None:
        """Block until the container exits or ``timeout_s`` passes (pidfd: no polling)."""
        run_dir = self._dir(name)
        deadline = time.monotonic() + timeout_s
        if not _has_record(run_dir / "started_at"):
            # Starting takes milliseconds: return as soon as it has, so "running" is prompt.
            while not _has_record(run_dir / "started_at") and time.monotonic() < deadline:
                if _has_exited(run_dir) or not run_dir.exists():
                    return
                time.sleep(0.005)
            return
        pid = _read_int(run_dir / "shim.pid")
        if pid is None or _has_exited(run_dir):
            return
        try:
            pidfd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            return
        try:
            select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(pidfd)
        # Still alive (the wait timed out): return. Exited: its last record, the exit
        # code, is written just before; look for it briefly all the same.
        deadline = time.monotonic() + 0.5
        while not _has_exited(run_dir) and time.monotonic() < deadline:
            if _is_alive(pid, run_dir):
                return
            time.sleep(0.005)

    def logs_since(self, name: str, cursor: int) -> tuple[str, int]:
        """Return the complete log lines written after ``cursor`` and the next cursor."""
        log_path = self._dir(name) / "output.log"
        try:
            with log_path.open("rb") as log:
                log.seek(cursor)
                data = log.read(_MAX_LOG_CHUNK)
        except FileNotFoundError:
            return "", cursor
        is_finished = _has_exited(self._dir(name))
        end = len(data) if is_finished else data.rfind(b"\n") + 1
        return data[:end].decode("utf-8", errors="replace"), cursor + end

    def stop(self, name: str, grace_s: float) -> None:
        """SIGTERM the container's process group, then SIGKILL it after ``grace_s``.

        Only a group proven to be this container's is signalled (see ``_is_group_of``).
        """
        run_dir = self._dir(name)
        pgid = _read_int(run_dir / "pgid")
        if pgid is None or _has_exited(run_dir) or not _is_group_of(pgid, name):
            return
        (run_dir / "stop_requested").touch()
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self.wait(name, deadline - time.monotonic())
            if _has_exited(run_dir):
                return
        if _is_group_of(pgid, name):
            _signal_group(pgid, signal.SIGKILL)
        self.wait(name, 5.0)

    def remove(self, name: str) -> None:
        """Kill whatever still runs and delete the run directory; quiet if already gone."""
        run_dir = self._dir(name)
        if not run_dir.exists():
            return
        pgid = _read_int(run_dir / "pgid")
        if pgid is not None and not _has_exited(run_dir) and _is_group_of(pgid, name):
            _signal_group(pgid, signal.SIGKILL)
            self.wait(name, 5.0)
        shutil.rmtree(run_dir, ignore_errors=True)

    def list_ours(self) -> list[ContainerInfo]:
        """List every run directory with its tags and status."""
        containers = []
        for run_dir in sorted(self.root.iterdir()):
            if not run_dir.is_dir() or run_dir.name.startswith("."):
                continue
            spec = json.loads(_read(run_dir / "spec.json") or "{}")
            containers.append(
                ContainerInfo(run_dir.name, spec.get("tags", {}), self.status(run_dir.name))
            )
        return containers

    def log_path(self, name: str) -> Path:
        """Return the file holding the container's whole log (for saving it at the end)."""
        return self._dir(name) / "output.log"


def _is_group_of(pgid: int, name: str) -> bool:
    """Tell whether process group ``pgid`` is the container ``name``'s own.

    A recorded id outlives its process: after the worker's container restarts (run
    directories kept on a volume) or a reboot, it may name another job's compositor.
    The group's leader carries the container's name in its environment, set at launch
    and inherited from the shim, which no reused id can fake.
    """
    try:
        environment = Path(f"/proc/{pgid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return f"{_MARK}={name}".encode() in environment.split(b"\0")


def _is_alive(pid: int, run_dir: Path) -> bool:
    """Tell whether ``pid`` is this run's shim (guarding against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return str(run_dir).encode() in cmdline


def _has_record(path: Path) -> bool:
    """Tell whether the shim has written the record ``path`` (one write; empty: not yet)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _has_exited(run_dir: Path) -> bool:
    """Tell whether the shim has recorded the exit code, its last record."""
    return _has_record(run_dir / "exit_code")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text else None


def _timestamp(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _read_time(path: Path) -> datetime | None:
    text = _read(path)
    # bash writes $EPOCHREALTIME with the locale's decimal mark (a comma in some).
    return _timestamp(float(text.replace(",", "."))) if text else None


def _children_cpu_seconds(times: str | None) -> float | None:
    """Sum the children's user and system time from the shell's ``times`` output.

    Its second line reads like ``0m1.230000s 0m0.040000s``.
    """
    lines = (times or "").split("\n")
    if len(lines) < 2:
        return None
    total = 0.0
    for field in lines[1].split():
        minutes, _, seconds = field.rstrip("s").replace(",", ".").partition("m")
        try:
            total += float(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return total


def _detail_for(exit_code: int, run_dir: Path) -> str | None:
    if exit_code in (128 + signal.SIGKILL, 128 + signal.SIGTERM):
        return "killed" if (run_dir / "stop_requested").exists() else "oom_or_killed"
    return None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
