"""TaskTiger configured from settings runs a task end to end on the session's Redis."""

from __future__ import annotations

import redis
from tasktiger import Worker

from taskmanager.logs import configure_logging
from taskmanager.queueing import create_redis, create_tiger, tasktiger_config
from taskmanager.settings import Settings


def mark_done(redis_url: str, key: str) -> None:
    """A task: record that it ran (in the forked worker child)."""
    redis.Redis.from_url(redis_url).set(key, "done")


def test_worker_runs_an_enqueued_task(redis_url: str) -> None:
    settings = Settings(lease_ttl_s=40)
    configure_logging("WARNING")  # as the worker entry point does: TaskTiger needs structlog
    tiger = create_tiger(settings, create_redis(redis_url))
    tiger.delay(mark_done, args=(redis_url, "probe"), queue="interactive")
    Worker(tiger, queues=["interactive"]).run(once=True, force_once=True)
    assert redis.Redis.from_url(redis_url).get("probe") == b"done"


def test_timing_knobs_follow_settings() -> None:
    config = tasktiger_config(Settings(lease_ttl_s=90))
    assert config["ACTIVE_TASK_UPDATE_TIMEOUT"] == 180
    assert config["DEFAULT_HARD_TIMEOUT"] == 300
