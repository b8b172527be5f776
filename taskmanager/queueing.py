"""TaskTiger, configured from settings.

Redis only carries wake-ups: every job lives in Postgres, and the reconciler
re-enqueues anything Redis lost.
"""

from __future__ import annotations

from typing import Any

import redis
from tasktiger import TaskTiger

from taskmanager.settings import Settings


def create_redis(redis_url: str) -> redis.Redis[str]:
    """Connect to Redis the way TaskTiger needs (decoded responses)."""
    connection: redis.Redis[str] = redis.Redis.from_url(redis_url, decode_responses=True)
    return connection


def tasktiger_config(settings: Settings) -> dict[str, Any]:
    """Return TaskTiger's config dict for ``settings``; each knob says why it is set."""
    return {
        # A worker whose heartbeat is this old is presumed dead and its task requeued
        # (only tasks that retry on JobTimeoutException come back; supervise does).
        "ACTIVE_TASK_UPDATE_TIMEOUT": max(60, int(settings.lease_ttl_s * 2)),
        # How often a worker refreshes its heartbeat on the task it runs.
        "ACTIVE_TASK_UPDATE_TIMER": 10,
        # Default hard timeout; supervise sets its own from the job's deadline.
        "DEFAULT_HARD_TIMEOUT": 300,
        # Keep failed task records a week for debugging; Postgres holds the real history.
        "ERROR_TASK_EXPIRATION": 7 * 24 * 3600,
        # Workers poll this often when no pub/sub wake-up arrives.
        "SELECT_TIMEOUT": 1.0,
    }


def create_tiger(settings: Settings, connection: redis.Redis[str]) -> TaskTiger:
    """Create the TaskTiger instance for ``connection``."""
    return TaskTiger(
        connection=connection,
        config=tasktiger_config(settings),
        setup_structlog=False,  # configure_logging already did, with redaction
    )
