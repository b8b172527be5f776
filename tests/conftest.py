"""Session-wide throwaway services and per-test clean state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.localservices import EmbeddedRedis
from taskmanager.settings import Settings
from tests.services import Azurite, ThrowawayDatabases, run_azurite

# The machine's own PostgreSQL and Redis listen on their standard ports; ours never do.
_MACHINE_PORTS = (5432, 6379)


def _machine_service_pids() -> set[int]:
    """Return the PIDs of whatever listens on the standard PostgreSQL and Redis ports."""
    return {
        conn.pid
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in _MACHINE_PORTS and conn.pid
    }


@pytest.fixture(scope="session", autouse=True)
def machine_services_untouched() -> Iterator[None]:
    """Fail the session if a server on the standard PostgreSQL/Redis ports has gone."""
    before = _machine_service_pids()
    yield
    gone = {pid for pid in before if not psutil.pid_exists(pid)}
    assert not gone, f"the test session stopped machine services it did not start: {gone}"


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayDatabases]:
    """Start one throwaway PostgreSQL for the session, with a migrated template database."""
    databases = ThrowawayDatabases(tmp_path_factory.mktemp("pg"))
    yield databases
    databases.stop()


@pytest.fixture
def database_url(test_databases: ThrowawayDatabases) -> Iterator[str]:
    """Give the test a freshly migrated database of its own, dropped afterwards."""
    url = test_databases.create()
    yield url
    test_databases.drop(url)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Return a session factory bound to the test's own database."""
    engine = create_db_engine(database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """Start one throwaway redis-server (Unix socket only) for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), is_throwaway=True)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """Return the session Redis's URL, emptied for this test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Start Azurite's blob service for the session (installed by `make test` from npm)."""
    with run_azurite(tmp_path_factory.mktemp("azurite")) as emulator:
        yield emulator


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    """Return settings pointing at the test's own database, Redis and a temp data dir."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,  # type: ignore[arg-type]
        redis_url=redis_url,  # type: ignore[arg-type]
    )
