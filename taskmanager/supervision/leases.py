"""The run lease: who supervises a run, fenced by a token, timed by the database clock.

Taking the lease bumps ``lease_token``; every later write about the run checks it, so a
manager that lost its lease (paused, partitioned, presumed dead) can no longer change
anything even if it wakes up and tries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

# The first key of every manager's presence lock ("cliv"); the second is
# hashtext(manager id). See ``liveness.py``.
PRESENCE_LOCK_NAMESPACE = 0x636C6976

# Whether a run's owner holds its presence lock in this database. Two int4 keys show in
# pg_locks as classid and objid (the second as an unsigned oid), with objsubid 2.
OWNER_IS_PRESENT = f"""
    EXISTS (
        SELECT 1 FROM pg_locks AS presence
         WHERE presence.locktype = 'advisory'
           AND presence.database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())
           AND presence.classid = {PRESENCE_LOCK_NAMESPACE}
           AND presence.objid = (hashtext(runs.lease_owner)::bigint & 4294967295)::oid
           AND presence.objsubid = 2
           AND presence.granted)
"""  # noqa: S608 - built from constants, no input

# Free, ours, stale, or its owner's session has ended (a dead process) and its last
# heartbeat is ``gone_after_s`` old: a manager that heartbeats, lock or no lock, keeps it.
_TAKE = text(
    f"""
    UPDATE runs
       SET lease_owner = :owner, lease_token = lease_token + 1, heartbeat_at = now()
     WHERE id = :run_id
       AND state IN ('pending', 'launching', 'running')
       AND (lease_owner IS NULL
            OR lease_owner = :owner
            OR heartbeat_at IS NULL
            OR heartbeat_at < now() - make_interval(secs => :ttl_s)
            OR (heartbeat_at < now() - make_interval(secs => :gone_after_s)
                AND NOT {OWNER_IS_PRESENT}))
    RETURNING lease_token, lease_owner
    """  # noqa: S608 - built from constants, no input
)

_BEAT = text(
    """
    UPDATE runs
       SET heartbeat_at = now()
      FROM jobs
     WHERE runs.id = :run_id AND runs.lease_token = :token AND jobs.id = runs.job_id
    RETURNING now() AS db_now, jobs.cancel_requested
    """
)

_RELEASE = text(
    """
    UPDATE runs SET lease_owner = NULL, heartbeat_at = NULL
     WHERE id = :run_id AND lease_token = :token
    """
)


@dataclass(frozen=True)
class Heartbeat:
    """What a successful heartbeat learned from the database."""

    db_now: datetime
    is_cancel_requested: bool


def take_lease(
    session: Session, run_id: uuid.UUID, owner: str, ttl_s: float, gone_after_s: float
) -> int | None:
    """Take the run's lease if it is free, stale, ours, or its owner is gone; the new token.

    Gone: the holder's presence lock is missing (its process died, see ``liveness.py``)
    and it has not heartbeat for ``gone_after_s``.
    """
    row = session.execute(
        _TAKE, {"run_id": run_id, "owner": owner, "ttl_s": ttl_s, "gone_after_s": gone_after_s}
    ).first()
    return int(row.lease_token) if row is not None else None


def renew_lease(session: Session, run_id: uuid.UUID, token: int) -> Heartbeat | None:
    """Refresh the heartbeat under ``token``; None means the lease was taken over."""
    row = session.execute(_BEAT, {"run_id": run_id, "token": token}).first()
    if row is None:
        return None
    return Heartbeat(db_now=row.db_now, is_cancel_requested=bool(row.cancel_requested))


def release_lease(session: Session, run_id: uuid.UUID, token: int) -> bool:
    """Give the lease up at once (graceful shutdown) so another manager adopts now."""
    result = session.execute(_RELEASE, {"run_id": run_id, "token": token})
    return bool(getattr(result, "rowcount", 0))


def new_manager_id() -> str:
    """Return a new name for a manager process: host, pid and a random suffix."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
