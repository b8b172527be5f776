"""Domain errors of the compositor and the exit codes the container contract gives them."""

from __future__ import annotations

EXIT_DONE = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_STORAGE = 3


class CompositorError(Exception):
    """Base of the errors the CLI turns into an `error` event and an exit code."""

    exit_code = EXIT_UNEXPECTED


class BadInput(CompositorError):
    """An input can never work: the job manager must not retry."""

    exit_code = EXIT_BAD_INPUT


class StorageUnreachable(CompositorError):
    """Storage could not be reached or refused us: a later attempt may succeed."""

    exit_code = EXIT_STORAGE
