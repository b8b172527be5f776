"""How many event streams may be open: per process and per user, below the thread count.

Each Server-Sent Events client holds a gunicorn thread until its job ends. Without a
cap, one user (or enough of them) could hold every thread, and every other request,
health checks included, would queue until the replica was restarted by its probe. A
stream beyond a cap is refused with 429 and ``Retry-After``; the web app then polls
(``GET …/events?after=``), which holds no thread.
"""

from __future__ import annotations

from backend.slots import NoSlotFree, UserSlots

# What a refused stream is told to wait before asking again, in seconds.
STREAM_RETRY_AFTER_S = 15


class TooManyStreams(NoSlotFree):
    """No stream slot is free for this user or this process."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(
            f"at most {limit} event streams may be open {scope}; poll "
            "GET /api/v1/jobs/{id}/events?after=N instead, or try again later",
            limit,
            STREAM_RETRY_AFTER_S,
        )


class StreamSlots(UserSlots):
    """Counts this process's open streams, in all and per user."""

    def refusal(self, scope: str, limit: int) -> TooManyStreams:
        """Return the error refusing a stream beyond ``limit`` ``scope``."""
        return TooManyStreams(scope, limit)
