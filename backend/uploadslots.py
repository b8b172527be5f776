"""How many photos may be checked at once: per user and per process.

Checking a photo decodes it, and a file of a few kilobytes may decode to hundreds of
megabytes (``taskmanager/uploads.py`` bounds one check). These caps bound how many
checks a process runs at once, so one user sending photos in parallel, or several
accounts doing so, cannot grow the API's memory without limit. An upload beyond a cap
is refused with 429 and ``Retry-After`` before its photo is looked at; ``clipyard``
waits and sends it again.
"""

from __future__ import annotations

from backend.slots import NoSlotFree, UserSlots

# What a refused upload is told to wait, in seconds: a check takes about a second.
UPLOAD_RETRY_AFTER_S = 1


class TooManyUploads(NoSlotFree):
    """No upload slot is free for this user or this process."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(
            f"at most {limit} photos may be checked {scope}; send this one again "
            f"in {UPLOAD_RETRY_AFTER_S} s",
            limit,
            UPLOAD_RETRY_AFTER_S,
        )


class UploadSlots(UserSlots):
    """Counts the photos this process is checking, in all and per user."""

    def refusal(self, scope: str, limit: int) -> TooManyUploads:
        """Return the error refusing an upload beyond ``limit`` ``scope``."""
        return TooManyUploads(scope, limit)
