"""One task-manager process: a TaskTiger worker serving the given queues.

``python -m taskmanager.supervision.worker --queues interactive,batch``; ``clipyard worker`` starts
several of these and runs the reconciler beside them.

Each process has one manager id for its whole life and holds its presence lock (see
``liveness.py``). A process started in place of one that died (``CLIPYARD_ADOPT_FROM``
names the dead one) first adopts the run its predecessor was supervising, before it
serves the queues: with every manager of a pool busy, a dead one's run never waits for
a free slot.
"""

from __future__ import annotations

import argparse
import os

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select
from tasktiger import TaskTiger, Worker
from tasktiger.exceptions import TaskNotFound
from tasktiger.executor import SyncExecutor

from taskmanager.backends import create_backend
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.logs import configure_logging
from taskmanager.models import Run
from taskmanager.queueing import (
    TaskTigerEnqueuer,
    create_redis,
    create_tiger,
    install_task_handlers,
)
from taskmanager.settings import Settings
from taskmanager.states import LIVE_RUN_STATES
from taskmanager.storage import create_storage
from taskmanager.supervision.leases import new_manager_id
from taskmanager.supervision.liveness import Presence
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from taskmanager.supervision.tasks import SupervisionHandlers

# Set by ``clipyard worker`` on a process it starts in place of one that died: the dead
# process's manager-id prefix (``host:pid:``).
ADOPT_FROM_ENVIRONMENT = "CLIPYARD_ADOPT_FROM"

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
    presence = Presence(
        settings.database_url.get_secret_value(), new_manager_id(), new_id=new_manager_id
    ).start()
    while not presence.wait_held(30.0):
        # A manager without its lock would look dead to every other: wait for the database.
        log.warning("presence lock not held yet; waiting for the database")
    manager_id = presence.manager_id
    adopt_from = os.environ.get(ADOPT_FROM_ENVIRONMENT)
    if adopt_from:
        adopt_predecessors_runs(runtime, manager_id, adopt_from)
    install_task_handlers(SupervisionHandlers(runtime, manager_id))
    try:
        _serve(tiger, args.queues.split(","), runtime)
    finally:
        presence.stop()


def adopt_predecessors_runs(runtime: Runtime, manager_id: str, predecessor: str) -> None:
    """Supervise the runs the dead process ``predecessor`` held, one after the other."""
    with runtime.sessions() as session:
        job_ids = session.scalars(
            select(Run.job_id).where(
                Run.lease_owner.startswith(predecessor, autoescape=True),
                Run.state.in_(LIVE_RUN_STATES),
            )
        ).all()
    for job_id in job_ids:
        log.info("adopting the run of the manager this one replaces", job_id=str(job_id))
        try:
            Supervisor(runtime, manager_id).supervise(job_id)
        except Exception:
            log.exception("adopting a predecessor's run failed", job_id=str(job_id))


def _serve(tiger: TaskTiger, queues: list[str], runtime: Runtime) -> None:
    """Serve the queues until SIGTERM, riding out a lost task and a Redis away."""
    redis_wait = _REDIS_RETRY_FIRST_S
    while True:
        # In-process execution: a supervisor is light (it only watches a container), so
        # forking one per task would only throw away the warm connection pool and
        # SQLAlchemy's statement cache every time. A crash loses nothing: the lease
        # goes stale and another manager adopts the run.
        try:
            worker = Worker(tiger, queues=queues, executor_class=SyncExecutor)
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
