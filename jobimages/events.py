"""Write the JSON-lines progress protocol the job manager reads from stdout."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from jobimages.urls import Redactor


class EventWriter:
    """Emit `start`, rate-limited `progress`, and a final `done` or `error` event.

    Progress is throttled because the manager stores log lines; a few per second is
    plenty to draw a progress bar.
    """

    def __init__(
        self,
        stream: TextIO,
        redactor: Redactor,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.25,  # at most ~4 progress lines a second
    ) -> None:
        self._stream = stream
        self._redactor = redactor
        self._clock = clock
        self._min_interval_s = min_interval_s
        self._last_progress_at: float | None = None
        self._is_closed = False
        # The deadline's watchdog thread may write the last line: one line at a time.
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event line, with secrets scrubbed, and flush it."""
        if self._is_closed:
            return
        line = json.dumps({"event": event, **fields}, separators=(",", ":"))
        try:
            with self._lock:
                self._stream.write(self._redactor.scrub(line) + "\n")
                self._stream.flush()
        except BrokenPipeError:
            # Nobody is listening any more; the job's result still matters, so carry on,
            # and point the descriptor at /dev/null so the exit-time flush cannot fail too.
            self._is_closed = True
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._stream.fileno())

    def start(self, total: int) -> None:
        """Announce the number of frames about to be composited."""
        self.emit("start", total=total)

    def progress(self, done: int, total: int) -> None:
        """Report frames done, unless a report went out too recently (the last one always goes)."""
        now = self._clock()
        is_last = done >= total
        if (
            not is_last
            and self._last_progress_at is not None
            and now - self._last_progress_at < self._min_interval_s
        ):
            return
        self._last_progress_at = now
        self.emit("progress", done=done, total=total)

    def done(self, **fields: Any) -> None:
        """Announce success with the figures of the finished job."""
        self.emit("done", **fields)

    def error(self, code: int, message: str) -> None:
        """Announce failure with the exit code about to be returned and a one-line reason."""
        self.emit("error", code=code, message=" ".join(message.split()))
