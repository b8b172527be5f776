"""Tell a dead manager from a silent one, and wake an adopter for a dead one's run at once.

A process that dies (SIGKILL, OOM, a crash) has its sockets closed by the kernel, and
PostgreSQL ends its session at once, releasing the session's advisory locks. So every
manager process holds one advisory lock, keyed by its manager id, on a connection of
its own for as long as it lives (``Presence``); a live run whose owner's lock is gone
has a dead owner. A frozen or partitioned manager keeps its session (no FIN reaches
the server), so its run is left to the lease TTL, as before.

The fencing token stays the only authority over a run: liveness only decides *when*
another manager may take the lease (``leases.take_lease``), never who writes.

After a PostgreSQL restart every session, and so every lock, is gone at once; each
``Presence`` notices its connection close and takes its lock again within a fraction
of a second. The watcher therefore calls an owner gone only when two of its passes,
``owner_gone_confirm_s`` apart, both found the lock missing: no stampede on live runs.
"""

from __future__ import annotations

import os
import select as fd_select
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions
import structlog
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from taskmanager.db import normalize_database_url
from taskmanager.models import JobEvent
from taskmanager.supervision.leases import OWNER_IS_PRESENT, PRESENCE_LOCK_NAMESPACE
from taskmanager.supervision.runtime import Runtime
from taskmanager.transitions import record_event

log = structlog.get_logger(__name__)

_ORPHANS = text(
    f"""
    SELECT runs.id, runs.job_id, runs.lease_token, jobs.batch_id, jobs.max_runtime_s,
           (runs.heartbeat_at IS NULL
            OR runs.heartbeat_at < now() - make_interval(secs => :ttl_s)) AS is_stale
      FROM runs JOIN jobs ON jobs.id = runs.job_id
     WHERE runs.state IN ('pending', 'launching', 'running')
       AND (runs.heartbeat_at IS NULL
            OR runs.heartbeat_at < now() - make_interval(secs => :ttl_s)
            OR (runs.lease_owner IS NOT NULL AND NOT {OWNER_IS_PRESENT}))
    """  # noqa: S608 - built from constants, no input
)


class _LockTaken(Exception):
    """Another session holds this manager id's presence lock."""


class Presence:
    """This process's presence lock, held on a connection of its own while it lives.

    The connection sits idle: a thread blocks on its socket and wakes only when the
    server closes it (a restart, a failover), then reconnects and locks again. A live
    manager therefore costs the database no queries at all.
    """

    def __init__(
        self,
        database_url: str,
        manager_id: str,
        retry_s: float = 0.2,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        url = make_url(normalize_database_url(database_url))
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        # Read it once the lock is held: until then a hash collision may replace it.
        self.manager_id = manager_id
        self._new_id = new_id
        self._has_held = False
        self._retry_s = retry_s
        self._stop = threading.Event()
        # Written to on stop: wakes the thread blocked on the connection's socket.
        self._wake_read, self._wake_write = os.pipe()
        self._held = threading.Event()
        self._connection: psycopg2.extensions.connection | None = None
        self._thread = threading.Thread(target=self._keep, name="presence", daemon=True)

    def start(self, timeout_s: float = 10.0) -> Presence:
        """Take the lock (waiting up to ``timeout_s`` for the database), keep it after."""
        self._thread.start()
        self._held.wait(timeout_s)
        return self

    @property
    def is_held(self) -> bool:
        """Tell whether the lock is held right now."""
        return self._held.is_set()

    def wait_held(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the lock; tell whether it is held."""
        return self._held.wait(timeout_s)

    def stop(self) -> None:
        """Release the lock (close the session)."""
        self._stop.set()
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=5)
        connection = self._connection
        if connection is not None:
            connection.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _keep(self) -> None:
        while not self._stop.is_set():
            try:
                self._connection = self._lock()
                self._has_held = True
                self._held.set()
                self._wait_until_closed(self._connection)
            except psycopg2.Error as exc:
                log.debug("presence lock not held; retrying", error=type(exc).__name__)
            except _LockTaken:
                # Another live session holds our key: a hash collision. Before any run is
                # ours, a new id costs nothing; after, keep trying (runs carry the id).
                if self._new_id is not None and not self._has_held:
                    self.manager_id = self._new_id()
                else:
                    log.warning("presence lock held by another session", manager=self.manager_id)
            self._held.clear()
            self._stop.wait(self._retry_s)

    def _lock(self) -> psycopg2.extensions.connection:
        connection = psycopg2.connect(self._dsn, application_name="clipyard-presence")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                (PRESENCE_LOCK_NAMESPACE, self.manager_id),
            )
            row = cursor.fetchone()
        if not (row and row[0]):
            connection.close()
            raise _LockTaken
        return connection

    def _wait_until_closed(self, connection: psycopg2.extensions.connection) -> None:
        """Block until the server closes the session (or ``stop``)."""
        while not self._stop.is_set():
            readable, _, _ = fd_select.select([connection, self._wake_read], [], [], 60.0)
            if connection in readable:
                try:
                    connection.poll()  # the server's goodbye, or nothing at all
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT 1")
                except psycopg2.Error:
                    connection.close()
                    return


@dataclass(frozen=True)
class OrphanedRun:
    """A live run no manager is watching: what waking an adopter for it needs."""

    run_id: uuid.UUID
    job_id: uuid.UUID
    lease_token: int
    batch_id: uuid.UUID | None
    max_runtime_s: int


def wake_adopter(runtime: Runtime, session: Session, run: OrphanedRun, reason: str) -> None:
    """Wake a manager to adopt ``run``, and say why in the job's history (once per token).

    The wake key is the run's token: the dead manager's own TaskTiger entry may still
    look active, and any number of watchers wake one adopter per orphaning.
    """
    runtime.enqueuer.enqueue(
        run.job_id,
        is_batch=run.batch_id is not None,
        max_runtime_s=run.max_runtime_s,
        wake_key=f"adopt:{run.lease_token}",
    )
    last = session.scalars(
        select(JobEvent.kind)
        .where(JobEvent.job_id == run.job_id)
        .order_by(JobEvent.id.desc())
        .limit(1)
    ).first()
    if last != "adoption_requested":
        data = {"reason": reason, "lease_token": run.lease_token}
        record_event(session, run.job_id, "adoption_requested", data, run_id=run.run_id)
        log.info("run orphaned: waking an adopter", job_id=str(run.job_id), reason=reason)


@dataclass
class LivenessWatcher:
    """Finds live runs whose manager is gone (or whose lease is stale) and wakes adopters.

    Run by every ``clipyard worker`` parent on a short timer: one query per pass, and a
    wake-up per orphan keyed by the run's token, so any number of watchers wake each
    orphan once.
    """

    runtime: Runtime
    # run id -> when (runtime clock) a pass first found its owner's lock missing.
    _missing_since: dict[uuid.UUID, float] = field(default_factory=dict)
    # (run id, token) -> when (runtime clock) this watcher woke an adopter for it; woken
    # again a lease TTL later if still orphaned (the wake-up may have been lost).
    _woken: dict[tuple[uuid.UUID, int], float] = field(default_factory=dict)

    def check(self) -> list[uuid.UUID]:
        """Run one pass; return the jobs whose runs it woke an adopter for."""
        settings = self.runtime.settings
        now = self.runtime.clock()
        woken = []
        with self.runtime.sessions.begin() as session:
            rows = session.execute(_ORPHANS, {"ttl_s": settings.lease_ttl_s}).all()
            missing = set()
            for run_id, job_id, token, batch_id, max_runtime, is_stale in rows:
                if not is_stale:
                    missing.add(run_id)
                    first_seen = self._missing_since.setdefault(run_id, now)
                    if now - first_seen < settings.owner_gone_confirm_s:
                        continue  # maybe a database restart: its owner may lock again
                woken_at = self._woken.get((run_id, token))
                if woken_at is not None and now - woken_at < settings.lease_ttl_s:
                    continue
                self._woken[(run_id, token)] = now
                reason = "stale_lease" if is_stale else "owner_gone"
                wake_adopter(
                    self.runtime,
                    session,
                    OrphanedRun(run_id, job_id, token, batch_id, max_runtime),
                    reason,
                )
                woken.append(job_id)
            self._missing_since = {
                run_id: since for run_id, since in self._missing_since.items() if run_id in missing
            }
        self._woken = {
            key: at for key, at in self._woken.items() if now - at < settings.lease_ttl_s
        }
        return woken


def watch_liveness_forever(runtime: Runtime, stop: threading.Event) -> None:
    """Run a liveness pass every ``liveness_interval_s`` until ``stop``; failures are logged."""
    watcher = LivenessWatcher(runtime)
    while not stop.wait(runtime.settings.liveness_interval_s):
        try:
            watcher.check()
        except Exception:
            log.exception("liveness pass failed")
