"""Shared benchmark plumbing: throwaway services, figures as JSON lines."""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from tasktiger import TaskTiger

from taskmanager.localservices import EmbeddedPostgres, EmbeddedRedis
from taskmanager.migrate import upgrade_database
from taskmanager.settings import Settings
from tests.services import wait_until


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    """Print one figure as a JSON line."""
    print(
        json.dumps({"metric": metric, "value": round(value, 4), "unit": unit, "goal": goal}),
        flush=True,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Return the ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    """Return the median of ``values``."""
    return statistics.median(values)


@dataclass(frozen=True)
class Services:
    """Throwaway services for one benchmark run."""

    root: Path
    database_url: str
    redis_url: str


@contextmanager
def throwaway_services() -> Iterator[Services]:
    """Start a migrated PostgreSQL and a Redis in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="clipyard-bench-") as directory:
        root = Path(directory)
        postgres = EmbeddedPostgres(root / "postgres", is_throwaway=True)
        redis_server = EmbeddedRedis(root / "redis", is_throwaway=True)
        try:
            upgrade_database(postgres.url)
            yield Services(root, postgres.url, redis_server.url)
        finally:
            redis_server.stop()
            postgres.stop()


def wait_for_managers(tiger: TaskTiger, count: int, timeout_s: float = 120) -> None:
    """Block until ``count`` managers listen on TaskTiger's activity channel.

    The clock starts on a warm pool, as in production, where managers are long-lived:
    loading a pool of Python processes on two cores takes seconds that no job waits for
    there. A fixed sleep was too short under load and made the first jobs wait.
    """
    channel = f"{tiger.config['REDIS_PREFIX']}:activity"

    def listening() -> int:
        return int(dict(tiger.connection.pubsub_numsub(channel)).get(channel, 0))

    wait_until(lambda: listening() >= count, timeout_s, f"{count} managers listening", 0.1)


def bench_settings(services: Services, **overrides: object) -> Settings:
    """Settings for a benchmark's stack: its services, fake jobs allowed, quiet logs."""
    fields: dict[str, object] = {
        "data_dir": services.root / "data",
        "database_url": SecretStr(services.database_url),
        "redis_url": SecretStr(services.redis_url),
        "allow_fake_jobs": True,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(**fields)  # type: ignore[arg-type]
