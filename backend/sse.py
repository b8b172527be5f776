"""Live job events: one poller per process wakes every stream whose job has news.

Each Server-Sent Events client waits on its job's condition instead of querying
Postgres on a timer, so a hundred connected clients cost one small query per poll
interval, not a hundred.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict

import structlog
from sqlalchemy import Engine, text

log = structlog.get_logger(__name__)
_MAX_ID = text("SELECT coalesce(max(id), 0) FROM job_events")


class EventHub:
    """Polls job_events for new rows and wakes the streams of the jobs concerned."""

    def __init__(self, engine: Engine, poll_interval_s: float) -> None:
        self.engine = engine
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._waiters: dict[uuid.UUID, list[threading.Event]] = defaultdict(list)
        self._thread: threading.Thread | None = None
        self._last_id: int | None = None
        self._stopped = threading.Event()

    def subscribe(self, job_id: uuid.UUID) -> threading.Event:
        """Return an event set whenever ``job_id`` gets a new event (until unsubscribed)."""
        wake = threading.Event()
        if self._last_id is None:
            # The baseline is taken before the caller reads the job's events, so any
            # event committed after that read is newer than it and wakes the caller.
            with self.engine.connect() as connection:
                self._last_id = connection.scalar(_MAX_ID) or 0
        with self._lock:
            self._waiters[job_id].append(wake)
            # Started on first use, after a pre-forking server has forked.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        return wake

    def unsubscribe(self, job_id: uuid.UUID, wake: threading.Event) -> None:
        """Stop waking ``wake``."""
        with self._lock:
            waiters = self._waiters.get(job_id, [])
            if wake in waiters:
                waiters.remove(wake)
            if not waiters:
                self._waiters.pop(job_id, None)

    def stop(self) -> None:
        """Stop the poller (tests)."""
        self._stopped.set()

    def _poll(self) -> None:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT job_id, max(id) FROM job_events WHERE id > :last GROUP BY job_id"),
                {"last": self._last_id},
            ).all()
        if not rows:
            return
        self._last_id = max(self._last_id or 0, *(int(r[1]) for r in rows))
        with self._lock:
            for job_id, _ in rows:
                for wake in self._waiters.get(job_id, []):
                    wake.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_interval_s):
            with self._lock:
                if not self._waiters:
                    continue
            try:
                self._poll()
            except Exception as exc:  # database restarting: the streams keep waiting
                log.warning("event poll failed", error=str(exc))
