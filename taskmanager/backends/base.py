"""The container backend interface: one short-lived container per job attempt.

Backends are swappable (a local process group, Azure Container Instances); the
supervisor only speaks this interface. Every call is safe to repeat, so a manager that
adopts another's run can pick up wherever its predecessor stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

# The value of the ``app`` tag on every container clipyard creates: what makes it ours
# for ``list_ours`` and the janitor, whichever manager or version launched it.
APP_TAG = "clipyard"


class ContainerState(StrEnum):
    """What a backend can tell about a container."""

    PENDING = "pending"  # asked for, not yet running (image pull, provisioning)
    RUNNING = "running"
    EXITED = "exited"  # finished with an exit code
    LOST = "lost"  # exists in name only: it died without an exit code we can read
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one attempt's container."""

    name: str
    image: str
    args: list[str]
    cpu: Decimal
    memory_gb: Decimal
    # Plain environment; secure_env holds the SAS URLs and is never logged or listed.
    env: dict[str, str] = field(default_factory=dict)
    secure_env: dict[str, str] = field(default_factory=dict)
    # Identify the container as ours: job id, attempt and lease token.
    tags: dict[str, str] = field(default_factory=dict)
    is_spot: bool = False


@dataclass(frozen=True)
class ContainerStatus:
    """A container's state with the times and exit code the backend knows."""

    state: ContainerState
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Backend-specific reason: "killed", "oom", "evicted", "image_pull" ...
    detail: str | None = None
    # Measured usage where the backend can tell (the local backend can).
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None

    @property
    def is_finished(self) -> bool:
        """Tell whether the container will never run again."""
        return self.state in (ContainerState.EXITED, ContainerState.LOST)


@dataclass(frozen=True)
class ContainerInfo:
    """One of our containers, as the janitor sees it."""

    name: str
    tags: dict[str, str]
    status: ContainerStatus


class ContainerNotFound(Exception):
    """The named container does not exist."""


class BackendError(Exception):
    """The backend refused or failed a request.

    ``is_retryable`` tells whether trying again later may succeed (capacity, rate
    limits, server errors) or never will (bad image, invalid spec).
    """

    def __init__(
        self, message: str, *, is_retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.is_retryable = is_retryable
        self.retry_after_s = retry_after_s


class ContainerBackend(Protocol):
    """Launch, watch, stop and remove containers; list ours for the janitor."""

    name: str

    def launch(self, spec: ContainerSpec) -> None:
        """Start the container named spec.name; adopt it quietly if it already exists."""

    def status(self, name: str) -> ContainerStatus:
        """Return the container's state (NOT_FOUND if it does not exist)."""

    def wait(self, name: str, timeout_s: float) -> None:
        """Block until the container may have changed state, at most ``timeout_s``.

        Backends that can be told of an exit return at once when it happens; others
        simply sleep.
        """

    def logs_since(self, name: str, cursor: int) -> tuple[str, int]:
        """Return the complete log lines written after ``cursor`` and the next cursor."""

    def stop(self, name: str, grace_s: float) -> None:
        """Ask the container to stop (SIGTERM), killing it after ``grace_s`` seconds."""

    def remove(self, name: str) -> None:
        """Delete the container; succeed quietly if it is already gone."""

    def list_ours(self) -> list[ContainerInfo]:
        """List every container this product created that still exists."""
