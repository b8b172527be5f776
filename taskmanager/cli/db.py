"""``clipyard db``: apply and inspect the database migrations."""

from __future__ import annotations

import click
from sqlalchemy.exc import OperationalError

from taskmanager.cli.context import fail_unavailable, load_settings
from taskmanager.localservices import embedded_database
from taskmanager.migrate import current_revision, downgrade_database, upgrade_database


@click.group()
def db() -> None:
    """Manage the database schema (the embedded PostgreSQL when DATABASE_URL is unset)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    with embedded_database(load_settings()) as url:
        try:
            upgrade_database(url, revision)
            click.echo(f"database at revision {current_revision(url)}")
        except OperationalError as exc:
            fail_unavailable("database", exc)


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Roll migrations back to REVISION ('base' removes every table)."""
    with embedded_database(load_settings()) as url:
        try:
            downgrade_database(url, revision)
            click.echo(f"database at revision {current_revision(url) or 'base'}")
        except OperationalError as exc:
            fail_unavailable("database", exc)


@db.command()
def current() -> None:
    """Print the revision the database is at."""
    with embedded_database(load_settings()) as url:
        try:
            click.echo(current_revision(url) or "base")
        except OperationalError as exc:
            fail_unavailable("database", exc)
