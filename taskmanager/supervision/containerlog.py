"""One attempt's log as the manager reads it: followed for progress, spooled for keeps.

ACI keeps only the last 16 KB of a container's log once it stops, so the manager
writes everything it reads to a local spool as it watches and saves that, not what
the backend still has, when the attempt ends.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO, cast

from taskmanager.backends.base import ContainerBackend
from taskmanager.supervision.progress import ProgressTracker


class ContainerLog:
    """Reads new log lines from the backend into a tracker and a spool file."""

    def __init__(
        self, backend: ContainerBackend, name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backend = backend
        self.name = name
        self.tracker = ProgressTracker(clock)
        self.cursor = 0
        # Closed by close(), which the supervisor calls when the attempt is done with.
        self.spool = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115

    def read_more(self) -> None:
        """Fetch whatever the container wrote since the last read."""
        text, self.cursor = self.backend.logs_since(self.name, self.cursor)
        if text:
            self.spool.write(text.encode())
            self.tracker.feed(text)

    def read_all(self) -> None:
        """Fetch everything the backend still has (when nothing was watched)."""
        while True:
            before = self.cursor
            self.read_more()
            if self.cursor == before:
                return

    def close(self) -> None:
        """Delete the spool."""
        self.spool.close()
