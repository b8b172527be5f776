"""Everything a task manager process works with, built once from settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.backends.base import ContainerBackend
from taskmanager.queueing import Enqueuer
from taskmanager.settings import Settings
from taskmanager.storage import Storage


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
    # Monotonic seconds for the manager's own timing (fresh leases, stalled progress);
    # lease times come from the database clock. Tests drive a simulated one.
    clock: Callable[[], float] = time.monotonic
