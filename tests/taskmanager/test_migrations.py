"""Migrations: upgrade from empty, downgrade to base, and agreement with the models."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from taskmanager.db import create_db_engine
from taskmanager.migrate import current_revision, downgrade_database, upgrade_database
from taskmanager.models import Base
from tests.services import REPO_ROOT, ThrowawayDatabases

TABLES = {
    "users",
    "api_tokens",
    "web_sessions",
    "uploads",
    "templates",
    "jobs",
    "runs",
    "job_events",
    "batches",
}


@pytest.fixture
def empty_database_url(test_databases: ThrowawayDatabases) -> Iterator[str]:
    url = test_databases.create(is_migrated=False)
    yield url
    test_databases.drop(url)


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url, pool_class=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_table_and_downgrade_removes_them(
    empty_database_url: str,
) -> None:
    assert _tables(empty_database_url) == set()
    upgrade_database(empty_database_url)
    assert _tables(empty_database_url) == TABLES
    assert current_revision(empty_database_url) is not None
    downgrade_database(empty_database_url, "base")
    assert _tables(empty_database_url) == set()
    assert current_revision(empty_database_url) is None


def test_models_match_migrations(database_url: str) -> None:
    engine = create_db_engine(database_url, pool_class=sa.pool.NullPool)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_upgrade_on_fresh_embedded_postgres_then_alembic_downgrade(tmp_path: Path) -> None:
    """`clipyard db upgrade` starts the embedded PostgreSQL itself when DATABASE_URL is unset."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CLIPYARD_DATA_DIR"] = str(tmp_path / "data")
    clipyard = str(Path(sys.executable).parent / "clipyard")
    alembic = str(Path(sys.executable).parent / "alembic")

    upgraded = _run([clipyard, "db", "upgrade"], env, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database at revision" in upgraded.stdout

    # The data survives between runs: the same embedded server comes back at head.
    current = _run([clipyard, "db", "current"], env, tmp_path)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() != "base"

    downgraded = _run([alembic, "downgrade", "base"], env, REPO_ROOT)
    assert downgraded.returncode == 0, downgraded.stderr
    after = _run([clipyard, "db", "current"], env, tmp_path)
    assert after.stdout.strip() == "base"


def test_cli_reports_unreachable_database_with_exit_code_3(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgresql://nobody@/clipyard?host={tmp_path}"  # no server there
    clipyard = str(Path(sys.executable).parent / "clipyard")
    result = _run([clipyard, "db", "upgrade"], env, tmp_path)
    assert result.returncode == 3
    assert "database unreachable" in result.stderr
