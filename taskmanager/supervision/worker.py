"""One task-manager process: a TaskTiger worker serving the given queues.

``python -m taskmanager.supervision.worker --queues interactive,batch``; ``clipyard worker`` starts
several of these and runs the reconciler beside them.
"""

from __future__ import annotations

import argparse

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tasktiger import TaskTiger, Worker
from tasktiger.exceptions import TaskNotFound
from tasktiger.executor import SyncExecutor

from taskmanager.backends import create_backend
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.logs import configure_logging
from taskmanager.queueing import (
    TaskTigerEnqueuer,
    create_redis,
    create_tiger,
    install_task_handlers,
)
from taskmanager.settings import Settings
from taskmanager.storage import create_storage
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.tasks import SupervisionHandlers

log = structlog.get_logger(__name__)

# How long a worker waits for an unreachable Redis before it looks again (doubling).
_REDIS_RETRY_FIRST_S = 0.5
_REDIS_RETRY_MAX_S = 8.0


def build_runtime(
    settings: Settings, database_url: str, redis_url: str, *, tiger: TaskTiger | None = None
) -> Runtime:
    """Build a process's runtime from settings and the resolved service URLs.

    ``tiger`` is the TaskTiger instance to enqueue on (a new one for ``redis_url`` if None).
    """
    engine = create_db_engine(database_url)
    tiger = tiger or create_tiger(settings, create_redis(redis_url))
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        backend=create_backend(settings, redis_url=redis_url),
        storage=create_storage(settings),
        enqueuer=TaskTigerEnqueuer(tiger, settings),
    )


def main() -> None:
    """Serve the queues until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m taskmanager.supervision.worker")
    parser.add_argument("--queues", required=True, help="comma-separated queue names")
    args = parser.parse_args()
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    if settings.database_url is None or settings.redis_url is None:
        raise SystemExit("a worker needs DATABASE_URL and REDIS_URL (clipyard worker sets them)")
    redis_url = settings.redis_url.get_secret_value()
    tiger = create_tiger(settings, create_redis(redis_url))
    runtime = build_runtime(
        settings, settings.database_url.get_secret_value(), redis_url, tiger=tiger
    )
    install_task_handlers(SupervisionHandlers(runtime))
    redis_wait = _REDIS_RETRY_FIRST_S
    while True:
        # In-process execution: a supervisor is light (it only watches a container), so
        # forking one per task would only throw away the warm connection pool and
        # SQLAlchemy's statement cache every time. A crash loses nothing: the lease
        # goes stale and another manager adopts the run.
        try:
            worker = Worker(tiger, queues=args.queues.split(","), executor_class=SyncExecutor)
            worker.run()
            return
        except TaskNotFound:
            # Redis lost the task under us (flushed, failed over). Postgres still has the
            # job and the reconciler re-enqueues it: carry on serving the queues.
            log.warning("task vanished from Redis; worker restarting")
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Redis restarting or away: wait for it here, with backoff, rather than die
            # and be restarted in a loop (each start costs a second of CPU on two cores).
            log.warning("Redis unreachable; serving again when it is back", error=str(exc))
            if runtime.shutdown.wait(redis_wait):
                return
            redis_wait = min(redis_wait * 2, _REDIS_RETRY_MAX_S)
            continue
        redis_wait = _REDIS_RETRY_FIRST_S


if __name__ == "__main__":
    main()
