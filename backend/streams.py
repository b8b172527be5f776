"""How many event streams may be open: per process and per user, below the thread count.

Each Server-Sent Events client holds a gunicorn thread until its job ends. Without a
cap, one user (or enough of them) could hold every thread, and every other request,
health checks included, would queue until the replica was restarted by its probe. A
stream beyond a cap is refused with 429 and ``Retry-After``; the web app then polls
(``GET …/events?after=``), which holds no thread.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

# What a refused stream is told to wait before asking again, in seconds.
STREAM_RETRY_AFTER_S = 15


class TooManyStreams(Exception):
    """No stream slot is free for this user or this process."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(
            f"at most {limit} event streams may be open {scope}; poll "
            "GET /api/v1/jobs/{id}/events?after=N instead, or try again later"
        )
        self.limit = limit
        self.retry_after_s = STREAM_RETRY_AFTER_S


class StreamSlots:
    """Counts this process's open streams, in all and per user."""

    def __init__(self, per_process: int, per_user: int) -> None:
        self.per_process = per_process
        self.per_user = per_user
        self._lock = threading.Lock()
        self._open: Counter[uuid.UUID] = Counter()

    def acquire(self, user_id: uuid.UUID) -> None:
        """Take a slot for ``user_id``; raise ``TooManyStreams`` if none is free."""
        with self._lock:
            if self._open.total() >= self.per_process:
                raise TooManyStreams("on this server at once", self.per_process)
            if self._open[user_id] >= self.per_user:
                raise TooManyStreams("per user", self.per_user)
            self._open[user_id] += 1

    def release(self, user_id: uuid.UUID) -> None:
        """Give back a slot taken by ``acquire``."""
        with self._lock:
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]
