"""Container groups as the emulator keeps them: each one's container is a local process.

A group is provisioned after its provisioning delay, then its one container runs as a
process group whose output goes to a log file, so real exit codes and logs flow back
through the emulated ARM API. A reaper thread moves groups along (start, exit, delete).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ACI keeps only the tail of a stopped container's log.
STOPPED_LOG_BYTES = 16 * 1024


def iso(timestamp: float | None) -> str | None:
    """Format a wall-clock time the way ARM does."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def repository(image: str) -> str:
    """Return an image reference's repository: no registry host, tag or digest."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        image = rest
    return image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image else image


@dataclass
class Group:
    """One container group and the process standing in for its container."""

    name: str
    body: dict[str, Any]  # the PUT body with secure values removed
    command: list[str] | None  # None: an image with nothing to run (stays running)
    env: dict[str, str]
    log_path: Path
    created_at: float
    ready_at: float  # when provisioning ends and the container starts
    pull_error: str | None = None
    provisioning_state: str = "Pending"
    container_state: str = "Waiting"
    detail_status: str = "ContainerCreating"
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    is_stopped: bool = False
    is_deleting: bool = False
    process: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    group_events: list[dict[str, Any]] = field(default_factory=list)
    # The reaper and request threads both advance a group; only one may start it.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_spot(self) -> bool:
        """Tell whether the group asked for Spot priority."""
        return str(self.body.get("properties", {}).get("priority", "")).lower() == "spot"

    @property
    def is_alive(self) -> bool:
        """Tell whether the container's process still runs."""
        return self.process is not None and self.process.poll() is None

    def add_event(self, name: str, message: str, kind: str = "Normal") -> None:
        """Record a container event as ACI reports them."""
        now = iso(time.time())
        self.events.append(
            {
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "name": name,
                "message": message,
                "type": kind,
            }
        )

    def advance(self, now: float) -> None:
        """Start the container when provisioning is over; note its exit."""
        with self.lock:
            self._advance(now)

    def _advance(self, now: float) -> None:
        if self.is_deleting or self.is_stopped:
            self._note_exit(now)
            return
        if self.provisioning_state == "Pending" and now >= self.ready_at:
            if self.pull_error is not None:
                self.provisioning_state = "Failed"
                self.detail_status = "ErrImagePull"
                self.add_event("Failed", self.pull_error, "Warning")
                return
            self._start(now)
        self._note_exit(now)

    def _start(self, now: float) -> None:
        image = self.body["properties"]["containers"][0]["properties"]["image"]
        self.add_event("Pulling", f'pulling image "{image}"')
        self.add_event("Pulled", f'Successfully pulled image "{image}"')
        self.provisioning_state = "Succeeded"
        self.container_state, self.detail_status, self.started_at = "Running", "", now
        if self.command is None:
            return
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env},
                    process_group=0,
                )
            except OSError as exc:
                log.write(f"cannot start {self.command[0]}: {exc}\n".encode())
                self._terminate(now, 127, "Error")
                return
        self.add_event("Started", "Started container")

    def _note_exit(self, now: float) -> None:
        if self.process is None or self.container_state == "Terminated":
            return
        code = self.process.poll()
        if code is None:
            return
        code = code if code >= 0 else 128 - code
        detail = self.detail_status or ("Completed" if code == 0 else "Error")
        self._terminate(now, code, detail)

    def _terminate(self, now: float, code: int | None, detail: str) -> None:
        self.container_state, self.exit_code = "Terminated", code
        self.finished_at, self.detail_status = now, detail

    def kill(self, grace_s: float) -> None:
        """SIGTERM the container's process group, SIGKILL it after ``grace_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        kill_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            kill_group(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, grace_s: float, detail: str = "Killed") -> None:
        """Stop the group as ACI's stop does: kill the container, keep the log's tail."""
        self.detail_status = detail
        self.kill(grace_s)
        if self.container_state != "Terminated":
            code = None if self.process is None else self.process.returncode
            if code is not None and code < 0:
                code = 128 - code
            self._terminate(time.time(), code, detail)
        self.is_stopped = True

    def read_log(self, tail: int | None) -> str:
        """Return the container's log as the logs API does (a stopped one truncated)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if self.is_stopped:
            data = data[-STOPPED_LOG_BYTES:]
        text = data.decode("utf-8", errors="replace")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return text

    def group_state(self) -> str:
        """Return the group's instance-view state."""
        if self.provisioning_state == "Failed":
            return "Failed"
        if self.is_stopped:
            return "Stopped"
        if self.container_state == "Terminated":
            return "Succeeded" if self.exit_code == 0 else "Failed"
        return "Running" if self.container_state == "Running" else "Pending"

    def to_json(self, resource_id: str, *, is_instance_view: bool) -> dict[str, Any]:
        """Render the group as ARM answers GET (and, without instance view, list)."""
        body = _copy(self.body)
        properties = body.setdefault("properties", {})
        properties["provisioningState"] = (
            "Deleting" if self.is_deleting else self.provisioning_state
        )
        body.update(
            id=resource_id, name=self.name, type="Microsoft.ContainerInstance/containerGroups"
        )
        if not is_instance_view:
            return body
        current: dict[str, Any] = {
            "state": self.container_state,
            "detailStatus": self.detail_status,
        }
        if self.started_at is not None:
            current["startTime"] = iso(self.started_at)
        if self.container_state == "Terminated":
            current["finishTime"] = iso(self.finished_at)
            if self.exit_code is not None:
                current["exitCode"] = self.exit_code
        container = properties["containers"][0]
        container["properties"]["instanceView"] = {
            "restartCount": 0,
            "currentState": current,
            "events": list(self.events),
        }
        properties["instanceView"] = {
            "state": self.group_state(),
            "events": list(self.group_events),
        }
        return body


def strip_secrets(body: dict[str, Any]) -> dict[str, Any]:
    """Return the body as ARM stores it for reading: no secure values, no passwords."""
    stored = _copy(body)
    properties = stored.get("properties", {})
    for container in properties.get("containers", []):
        for variable in container.get("properties", {}).get("environmentVariables", []) or []:
            variable.pop("secureValue", None)
    for credential in properties.get("imageRegistryCredentials", []) or []:
        credential.pop("password", None)
    return stored


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def kill_group(pgid: int, signum: int) -> None:
    """Signal a process group; quiet if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class Reaper:
    """A thread that advances every group about every ``interval_s``."""

    def __init__(self, advance_all: Any, interval_s: float = 0.02) -> None:
        self._advance_all = advance_all
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="armemulator-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._advance_all()

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(5)
