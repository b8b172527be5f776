"""Per-user and per-process counts of costly things an API process does at once.

A request takes a slot before the costly part (an event stream holding a thread, a photo
being decoded) and gives it back after. Beyond either cap it is refused at once with
429 and ``Retry-After``, never queued: a refused client holds no thread and no memory.
The counts are per process; each gunicorn worker keeps its own.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class NoSlotFree(Exception):
    """Base of the refusals when a cap is reached; the API answers 429 with Retry-After."""

    def __init__(self, message: str, limit: int, retry_after_s: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_s = retry_after_s


class UserSlots:
    """Counts the slots this process holds, in all and per user.

    Subclasses say what is counted by overriding ``refusal``.
    """

    def __init__(self, per_process: int, per_user: int) -> None:
        self.per_process = per_process
        self.per_user = per_user
        self._lock = threading.Lock()
        self._held: Counter[uuid.UUID] = Counter()

    def refusal(self, scope: str, limit: int) -> NoSlotFree:
        """Return the error refusing a slot beyond ``limit`` ``scope`` ("at once per user")."""
        return NoSlotFree(f"at most {limit} may be held {scope}", limit, 1)

    def acquire(self, user_id: uuid.UUID) -> None:
        """Take a slot for ``user_id``; raise ``refusal(…)`` if none is free."""
        with self._lock:
            if self._held.total() >= self.per_process:
                raise self.refusal("at once on this server", self.per_process)
            if self._held[user_id] >= self.per_user:
                raise self.refusal("at once per user", self.per_user)
            self._held[user_id] += 1

    def release(self, user_id: uuid.UUID) -> None:
        """Give back a slot taken by ``acquire``."""
        with self._lock:
            self._held[user_id] -= 1
            if self._held[user_id] <= 0:
                del self._held[user_id]

    @contextmanager
    def holding(self, user_id: uuid.UUID) -> Iterator[None]:
        """Hold a slot for ``user_id`` for the block; raise as ``acquire`` does."""
        self.acquire(user_id)
        try:
            yield
        finally:
            self.release(user_id)
