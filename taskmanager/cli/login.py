"""``clipyard login`` / ``logout``: keep an API token for the commands that call the API."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import click
import requests

from taskmanager.cli.apiclient import (
    ApiClient,
    ApiError,
    Credentials,
    config_path,
    load_credentials,
)
from taskmanager.cli.context import EXIT_UNEXPECTED, CliError, ServiceUnavailable

P = ParamSpec("P")
R = TypeVar("R")


def api_error_exit(exc: ApiError) -> CliError:
    """Turn an API error into the one-line CLI error with its exit code."""
    if exc.is_unreachable:
        return ServiceUnavailable(str(exc))
    error = CliError(str(exc))
    if not exc.is_refused:
        error.exit_code = EXIT_UNEXPECTED  # type: ignore[misc]  # per error, not per class
    return error


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """Turn ``ApiError``s raised inside into one-line CLI errors."""
    try:
        yield
    except ApiError as exc:
        raise api_error_exit(exc) from exc


def handles_api_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so API errors end it with a one-line message and exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with api_errors():
            return command(*args, **kwargs)

    return wrapper


def api_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--api`` and ``--token`` (from CLIPYARD_API_URL and CLIPYARD_TOKEN)."""
    command = click.option(
        "--token",
        envvar="CLIPYARD_TOKEN",
        default=None,
        show_envvar=True,
        help="API token (default: the one saved by clipyard login).",
    )(command)
    return click.option(
        "--api",
        "api_url",
        envvar="CLIPYARD_API_URL",
        default=None,
        show_envvar=True,
        help="API base URL (default: the saved one, else http://127.0.0.1:8000).",
    )(command)


def client_for(api_url: str | None, token: str | None) -> ApiClient:
    """Return a client with explicit settings first, then the saved login."""
    with api_errors():
        credentials = load_credentials(api_url, token)
    if not credentials.token:
        raise CliError("not logged in: run clipyard login, or set CLIPYARD_TOKEN")
    return ApiClient(credentials)


@click.command()
@api_options
@click.option("--email", help="Account email (prompted for when omitted).")
@click.option("--password", envvar="CLIPYARD_PASSWORD", help="Prompted for when omitted.")
@click.option("--name", "token_name", default=None, help="Name of the token to create.")
@handles_api_errors
def login(
    api_url: str | None,
    token: str | None,
    email: str | None,
    password: str | None,
    token_name: str | None,
) -> None:
    """Sign in and save an API token for this user (file readable by you only).

    With --token (or CLIPYARD_TOKEN) the given token is checked and saved instead.
    """
    base = load_credentials(api_url, None).api_url
    token_id = None
    if token is None:
        email = email or click.prompt("Email")
        password = password or click.prompt("Password", hide_input=True)
        http = requests.Session()
        browser = ApiClient(Credentials(base, None), http=http)
        csrf = browser.post("/api/v1/auth/login", {"email": email, "password": password})
        created = browser.request(
            "POST",
            "/api/v1/tokens",
            is_idempotent=False,
            json={"name": token_name or f"clipyard CLI on {socket.gethostname()}"[:100]},
            headers={"X-CSRF-Token": csrf["csrf_token"]},
        )
        with contextlib.suppress(ApiError):
            browser.request(
                "POST", "/api/v1/auth/logout", headers={"X-CSRF-Token": csrf["csrf_token"]}
            )
        token, token_id = created["token"], created["id"]
    credentials = Credentials(base, token, token_id)
    user = ApiClient(credentials).me()
    path = credentials.save()
    click.echo(f"logged in to {base} as {user['email']} ({user['role']}); token saved in {path}")


@click.command()
@handles_api_errors
def logout() -> None:
    """Revoke the saved API token (if this CLI created it) and forget it."""
    path = config_path()
    if not path.exists():
        click.echo("not logged in")
        return
    credentials = load_credentials(None, None)
    if credentials.token and credentials.token_id:
        with contextlib.suppress(ApiError):
            ApiClient(credentials).revoke_token(credentials.token_id)
    path.unlink()
    click.echo(f"logged out of {credentials.api_url}")
