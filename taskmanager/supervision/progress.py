"""Read the container's stdout: JSON-lines events (start, progress, done, error) and text."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskmanager.logs import redact

# How many plain (non-event) log lines to keep for an error excerpt.
_TAIL_LINES = 20


@dataclass
class ProgressTracker:
    """Follow one container's output: progress, the final event, the last lines.

    ``clock`` (monotonic seconds) times how long progress has stood still; tests pass
    a simulated one.
    """

    clock: Callable[[], float] = time.monotonic
    done: int = 0
    total: int = 0
    final: dict[str, Any] | None = None
    last_change_at: float = field(init=False)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    has_new_progress: bool = False

    def __post_init__(self) -> None:
        self.last_change_at = self.clock()

    @property
    def fraction(self) -> float:
        """Return progress as a fraction in [0, 1]."""
        if self.total <= 0:
            return 0.0
        return max(0.0, min(1.0, self.done / self.total))

    def feed(self, text: str) -> None:
        """Take newly written log text (complete lines)."""
        for line in text.splitlines():
            self._feed_line(line.strip())

    def _feed_line(self, line: str) -> None:
        if not line:
            return
        event = _parse_event(line)
        if event is None:
            self.tail.append(redact(line)[:500])
            return
        kind = event.get("event")
        if kind == "start":
            self.total = _as_int(event.get("total"), self.total)
            self._touch()
        elif kind == "progress":
            done = _as_int(event.get("done"), self.done)
            self.total = _as_int(event.get("total"), self.total)
            if done != self.done:
                self.done = done
                self.has_new_progress = True
                self._touch()
        elif kind in ("done", "error"):
            self.final = {k: v for k, v in event.items() if k != "event"} | {"event": kind}
            if kind == "done" and self.total:
                self.done = self.total
                self.has_new_progress = True
            self._touch()

    def _touch(self) -> None:
        self.last_change_at = self.clock()

    def restart_stall_clock(self) -> None:
        """Count the time without progress from now (when the container starts)."""
        self._touch()

    def seconds_since_change(self) -> float:
        """Return how long no progress has been reported."""
        return self.clock() - self.last_change_at

    def error_message(self) -> str | None:
        """Return the container's own error message, if it reported one."""
        if self.final and self.final.get("event") == "error":
            return redact(str(self.final.get("message", "")))[:1000] or None
        return None


def _parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "event" in value else None


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
