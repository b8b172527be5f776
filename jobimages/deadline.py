"""The container's own deadline: exit when it comes, whether or not a manager watches.

The task manager puts the attempt's deadline (epoch seconds, on the billed window that
starts at the create request) in ``CLIPYARD_DEADLINE_AT``. A manager normally stops the
container there, but a manager can be dead, paused or cut off from its database; the
container stopping itself is what makes "billed at most max_runtime_s" a bound rather
than a hope.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

DEADLINE_ENVIRONMENT = "CLIPYARD_DEADLINE_AT"
# As coreutils' `timeout`: the exit code of a command that ran out of time.
EXIT_DEADLINE = 124


class BadDeadline(ValueError):
    """``CLIPYARD_DEADLINE_AT`` is not a number of seconds since the epoch."""


def deadline_from(env: Mapping[str, str]) -> float | None:
    """Return the deadline the environment sets (epoch seconds), or None if none."""
    raw = env.get(DEADLINE_ENVIRONMENT, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadDeadline(f"{DEADLINE_ENVIRONMENT} must be epoch seconds; got {raw!r}") from None


def arm_deadline(deadline_at: float, on_expiry: Callable[[], object]) -> threading.Timer:
    """Call ``on_expiry`` then exit the process with ``EXIT_DEADLINE`` at ``deadline_at``.

    ``os._exit``: no cleanup may hold the container past its deadline (a blocked
    upload, an encoder mid-frame); a half-written output is never reported as done.
    """

    def expire() -> None:
        try:
            on_expiry()
        finally:
            os._exit(EXIT_DEADLINE)

    timer = threading.Timer(max(0.0, deadline_at - time.time()), expire)
    timer.daemon = True
    timer.start()
    return timer
