"""What every ``clipyard`` command needs: settings, logging and the exit codes."""

from __future__ import annotations

from typing import NoReturn

import click

from taskmanager.logs import configure_logging
from taskmanager.settings import Settings

EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
# Jobs ended, but not (all) with a video: batch watch, submit --wait.
EXIT_JOBS_UNSUCCESSFUL = 4
# batch watch: the batch is paused with nothing running; only an operator can go on.
EXIT_BATCH_PAUSED = 5


class CliError(click.ClickException):
    """A one-line error about the user's input or settings (exit code 2)."""

    exit_code = EXIT_BAD_INPUT


class ServiceUnavailable(CliError):
    """A one-line error naming a service that could not be reached (exit code 3)."""

    exit_code = EXIT_UNAVAILABLE


def load_settings() -> Settings:
    """Read the settings and set up logging, turning invalid settings into a clear error."""
    from pydantic import ValidationError

    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise CliError(f"invalid settings: {problems}") from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


def fail_unavailable(what: str, exc: BaseException) -> NoReturn:
    """Stop with exit code 3, naming the service that could not be reached."""
    from taskmanager.logs import redact

    raise ServiceUnavailable(f"{what} unreachable: {redact(str(exc)).splitlines()[0]}")
