"""Alembic environment: runs migrations online against the configured database.

The URL comes from the Alembic config (set by ``taskmanager.migrate``) or, when the
``alembic`` command is used directly, from ``DATABASE_URL`` (or the embedded
PostgreSQL of the local mode when that is unset).
"""

from __future__ import annotations

from contextlib import ExitStack

from alembic import context
from sqlalchemy import pool

from taskmanager.db import create_db_engine
from taskmanager.localservices import embedded_database
from taskmanager.models import Base
from taskmanager.settings import Settings

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Apply migrations in one transaction per revision on a dedicated connection."""
    with ExitStack() as stack:
        url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
        if not url:
            url = stack.enter_context(embedded_database(Settings.from_env()))
        engine = create_db_engine(url, pool_class=pool.NullPool)
        stack.callback(engine.dispose)
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them online")
run_migrations_online()
