"""A container backend that fails on cue: the faults a cloud control plane brings.

Wraps a real backend and forwards every call, except that the next calls of a chosen
method may raise a ``BackendError`` (a 429 with Retry-After, a 5xx, a network error)
before reaching it. A fake that behaves, not a mock: what is not failed really happens.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, update

from taskmanager.backends.base import (
    BackendError,
    ContainerBackend,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
)
from taskmanager.models import Run
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor


@dataclass
class FaultyBackend:
    """Forward to ``inner``; raise the queued errors of a method first."""

    inner: ContainerBackend
    failures: dict[str, list[BackendError]] = field(default_factory=lambda: defaultdict(list))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def name(self) -> str:
        """Return the wrapped backend's name."""
        return self.inner.name

    def fail_next(
        self,
        method: str,
        count: int,
        *,
        retry_after_s: float | None = None,
        message: str = "429 Too Many Requests (injected)",
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail as a throttled (429) call would."""
        error = BackendError(f"{method}: {message}", is_retryable=True, retry_after_s=retry_after_s)
        self.failures[method].extend([error] * count)

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if self.failures[method]:
            raise self.failures[method].pop(0)

    def launch(self, spec: ContainerSpec) -> None:
        """Launch through the wrapped backend unless a failure is due."""
        self._enter("launch")
        self.inner.launch(spec)

    def status(self, name: str) -> ContainerStatus:
        """Read the status through the wrapped backend unless a failure is due."""
        self._enter("status")
        return self.inner.status(name)

    def wait(self, name: str, timeout_s: float) -> None:
        """Wait through the wrapped backend."""
        self.inner.wait(name, timeout_s)

    def logs_since(self, name: str, cursor: int) -> tuple[str, int]:
        """Read logs through the wrapped backend unless a failure is due."""
        self._enter("logs_since")
        return self.inner.logs_since(name, cursor)

    def stop(self, name: str, grace_s: float) -> None:
        """Stop through the wrapped backend unless a failure is due."""
        self._enter("stop")
        self.inner.stop(name, grace_s)

    def remove(self, name: str) -> None:
        """Remove through the wrapped backend unless a failure is due."""
        self._enter("remove")
        self.inner.remove(name)

    def list_ours(self) -> list[ContainerInfo]:
        """List through the wrapped backend unless a failure is due."""
        self._enter("list_ours")
        return self.inner.list_ours()


@dataclass
class SlowStartBackend(FaultyBackend):
    """A backend whose containers stay pending (pulling, provisioning) for a while.

    ``launch`` is accepted at once, but the wrapped backend only starts the container
    once ``start_delay_s`` has passed, as ACI does after an image pull.
    """

    start_delay_s: float = 0.0
    _pending: dict[str, tuple[float, ContainerSpec]] = field(default_factory=dict)

    def launch(self, spec: ContainerSpec) -> None:
        """Accept the launch; start the container later."""
        self._enter("launch")
        self._pending.setdefault(spec.name, (time.monotonic() + self.start_delay_s, spec))

    def _start_if_due(self, name: str) -> bool:
        """Start the container if its delay is over; tell whether it is still pending."""
        if name not in self._pending:
            return False
        due, spec = self._pending[name]
        if time.monotonic() < due:
            return True
        del self._pending[name]
        self.inner.launch(spec)
        return False

    def status(self, name: str) -> ContainerStatus:
        """Say pending while provisioning, then forward."""
        self._enter("status")
        if self._start_if_due(name):
            return ContainerStatus(ContainerState.PENDING)
        return self.inner.status(name)

    def logs_since(self, name: str, cursor: int) -> tuple[str, int]:
        """Nothing to read while provisioning."""
        self._enter("logs_since")
        if name in self._pending:
            return "", cursor
        return self.inner.logs_since(name, cursor)

    def stop(self, name: str, grace_s: float) -> None:
        """Stopping a group still provisioning cancels it: nothing ever runs."""
        self._enter("stop")
        if self._pending.pop(name, None) is None:
            self.inner.stop(name, grace_s)

    def wait(self, name: str, timeout_s: float) -> None:
        """Sleep while provisioning; otherwise wait on the container."""
        if name in self._pending:
            time.sleep(max(0.0, timeout_s))
            return
        self.inner.wait(name, timeout_s)


@dataclass
class ExitsBeforeStop(FaultyBackend):
    """A backend where the container ends on its own just as the manager stops it."""

    def stop(self, name: str, grace_s: float) -> None:
        """Let the container finish first, then stop what is left (nothing)."""
        self._enter("stop")
        deadline = time.monotonic() + 30.0
        while not self.inner.status(name).is_finished and time.monotonic() < deadline:
            self.inner.wait(name, 0.5)
        self.inner.stop(name, grace_s)


@dataclass
class SlowStop(FaultyBackend):
    """A backend whose stop blocks a while before it acts, as an ACI stop can."""

    delay_s: float = 0.0

    def stop(self, name: str, grace_s: float) -> None:
        """Block for ``delay_s``, then stop."""
        self._enter("stop")
        time.sleep(self.delay_s)
        self.inner.stop(name, grace_s)


def die_after_launch(runtime: Runtime, job_id: uuid.UUID) -> str:
    """Create and launch the job's attempt as a manager would, then fall silent.

    The dead manager's lease is made long stale (no waiting out a real TTL); returns
    the container's name.
    """
    prepared = Supervisor(runtime, "dead-manager")._prepare(job_id)
    assert prepared is not None
    assert prepared.spec is not None
    runtime.backend.launch(prepared.spec)
    with runtime.sessions.begin() as session:
        session.execute(
            update(Run)
            .where(Run.job_id == job_id)
            .values(heartbeat_at=func.now() - func.make_interval(0, 0, 0, 0, 1))
        )
    return prepared.ref.container_name
