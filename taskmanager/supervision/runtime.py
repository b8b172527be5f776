"""Everything a task manager process works with, built once from settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.backends.base import ContainerBackend
from taskmanager.settings import Settings
from taskmanager.storage import Storage


class Enqueuer(Protocol):
    """Wakes a manager for a job (TaskTiger in production)."""

    def enqueue(
        self,
        job_id: UUID,
        *,
        is_batch: bool,
        max_runtime_s: float,
        delay_s: float | None = None,
        wake_key: str | None = None,
    ) -> None:
        """Wake a manager for ``job_id`` now (or after ``delay_s``)."""

    def is_queued(self, job_id: UUID, *, is_batch: bool) -> bool:
        """Tell whether a wake-up for ``job_id`` is pending."""


@dataclass
class Runtime:
    """Settings, database, container backend, storage and queue of one process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    backend: ContainerBackend
    storage: Storage
    enqueuer: Enqueuer
    # Set on SIGTERM: supervisors hand their runs over instead of watching on.
    shutdown: threading.Event = field(default_factory=threading.Event)
