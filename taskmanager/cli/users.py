"""``clipyard user``: create accounts and grant roles (the first operator starts here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.accounts import EmailTaken, InvalidAccountRequest, create_token, create_user
from taskmanager.accounts import set_role as set_user_role
from taskmanager.cli.context import CliError, fail_unavailable, load_settings
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.localservices import embedded_database


@contextmanager
def database_sessions() -> Iterator[sessionmaker[Session]]:
    """Yield sessions on the configured (or embedded) database; unreachable exits 3."""
    with embedded_database(load_settings()) as url:
        engine = create_db_engine(url, pool_size=1)
        try:
            yield create_session_factory(engine)
        except OperationalError as exc:
            fail_unavailable("database", exc)
        finally:
            engine.dispose()


@click.group()
def user() -> None:
    """Manage accounts."""


@user.command("create")
@click.argument("email")
@click.option("--operator", is_flag=True, help="Let the account see every job and run batches.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="CLIPYARD_NEW_USER_PASSWORD",
    help="Prompted for when omitted (or read from CLIPYARD_NEW_USER_PASSWORD).",
)
@click.option("--token", "token_name", help="Also create an API token with this name and print it.")
def create(email: str, operator: bool, password: str, token_name: str | None) -> None:
    """Create an account for EMAIL."""
    with database_sessions() as sessions:
        try:
            account = create_user(
                sessions, email, password, role="operator" if operator else "user"
            )
            click.echo(f"created {account.role} {account.email} ({account.id})")
            if token_name:
                _, secret = create_token(sessions, account.id, token_name)
                click.echo(f"token: {secret}")
        except InvalidAccountRequest as exc:
            raise CliError(str(exc)) from exc
        except EmailTaken as exc:
            raise CliError(f"an account with email {email} already exists") from exc


@user.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(["user", "operator"]))
def set_role(email: str, role: str) -> None:
    """Give the account EMAIL the role ROLE."""
    with database_sessions() as sessions:
        try:
            account = set_user_role(sessions, email, role)
        except InvalidAccountRequest as exc:
            raise CliError(str(exc)) from exc
        click.echo(f"{account.email} is now {account.role}")
