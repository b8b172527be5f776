"""One attempt as its manager holds it: what identifies it, and what its steps share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog

from taskmanager.backends.base import ContainerSpec
from taskmanager.models import Run
from taskmanager.supervision.containerlog import ContainerLog
from taskmanager.supervision.runtime import Runtime


@dataclass(frozen=True)
class AttemptRef:
    """What identifies an attempt, known to its manager without asking the database."""

    run_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    container_name: str

    @classmethod
    def of(cls, run: Run) -> AttemptRef:
        """Identify ``run``'s attempt."""
        return cls(run.id, run.job_id, run.attempt, run.container_name)


@dataclass(frozen=True)
class PreparedAttempt:
    """The attempt a manager is about to supervise: new (with its lease) or found."""

    ref: AttemptRef
    # Set when this manager created the run and so already holds its lease.
    token: int | None = None
    # Set with token: the spec to launch, the run already marked launching.
    spec: ContainerSpec | None = None
    # Set with token: the job's deadline, so watching a fresh run needs no read first.
    max_runtime_s: int | None = None
    # Set with token: when (runtime clock) the transaction that wrote the lease began.
    lease_written_at: float | None = None
    # Set with spec: when (database time) the billed window, and the deadline, start.
    launched_at: datetime | None = None


@dataclass
class LeasedAttempt:
    """An attempt under this manager's lease: what launching, watching and finishing share.

    Every write about the run carries ``token``; ``log`` is bound to the job, the
    container and the token. ``lease_renewed_at`` (runtime clock) is when the last
    transaction that renewed the lease began: container actions check it.
    """

    runtime: Runtime
    # The manager holding the lease (its ``manager_id``).
    owner: str
    ref: AttemptRef
    token: int
    container_log: ContainerLog
    log: structlog.BoundLogger
    lease_renewed_at: float

    @property
    def name(self) -> str:
        """Return the attempt's container name."""
        return self.ref.container_name
