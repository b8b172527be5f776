"""``clipyard db``: apply and inspect the database migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.exc import OperationalError

from taskmanager.cli.context import fail_unavailable, load_settings
from taskmanager.localservices import embedded_database
from taskmanager.migrate import current_revision, downgrade_database, upgrade_database


@contextmanager
def _database() -> Iterator[str]:
    """Yield the database URL (embedded if unset); an unreachable database exits 3."""
    with embedded_database(load_settings()) as url:
        try:
            yield url
        except OperationalError as exc:
            fail_unavailable("database", exc)


@click.group()
def db() -> None:
    """Manage the database schema (the embedded PostgreSQL when DATABASE_URL is unset)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    with _database() as url:
        upgrade_database(url, revision)
        click.echo(f"database at revision {current_revision(url)}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Roll migrations back to REVISION ('base' removes every table)."""
    with _database() as url:
        downgrade_database(url, revision)
        click.echo(f"database at revision {current_revision(url) or 'base'}")


@db.command()
def current() -> None:
    """Print the revision the database is at."""
    with _database() as url:
        click.echo(current_revision(url) or "base")
