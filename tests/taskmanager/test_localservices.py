"""Embedded PostgreSQL and Redis start, keep data when asked, and stop cleanly."""

from __future__ import annotations

from pathlib import Path

import psutil
import redis
import sqlalchemy as sa

from taskmanager.db import create_db_engine
from taskmanager.localservices import EmbeddedRedis, local_services
from taskmanager.settings import Settings


def _listening_ports(pid: int) -> set[int]:
    process = psutil.Process(pid)
    processes = [process, *process.children(recursive=True)]
    return {
        conn.laddr.port
        for proc in processes
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }


def test_persistent_services_keep_data_between_runs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with local_services(settings) as urls:
        engine = create_db_engine(urls.database_url)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE kept (v int)"))
            connection.execute(sa.text("INSERT INTO kept VALUES (42)"))
        engine.dispose()
        redis.Redis.from_url(urls.redis_url).set("kept", "yes")
    with local_services(settings) as urls:
        engine = create_db_engine(urls.database_url)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT v FROM kept")).scalar() == 42
        engine.dispose()
        assert redis.Redis.from_url(urls.redis_url).get("kept") == b"yes"


def test_throwaway_redis_listens_on_no_tcp_port_and_leaves_nothing(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", is_throwaway=True)
    pid = server._process.pid
    assert _listening_ports(pid) == set()
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "redis").exists()


def test_configured_urls_start_nothing(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql://u@/db?host=/nonexistent",  # type: ignore[arg-type]
        redis_url="redis://127.0.0.1:1/0",  # type: ignore[arg-type]
    )
    with local_services(settings) as urls:
        assert urls.database_url == "postgresql://u@/db?host=/nonexistent"
        assert urls.redis_url == "redis://127.0.0.1:1/0"
    assert not (tmp_path / "data").exists()
