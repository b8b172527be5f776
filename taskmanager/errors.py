"""The root of the errors the domain raises on purpose.

Each wing (jobs, batches, accounts, uploads, templates) has one base class derived
from ``DomainError``; the API maps them to status codes in one table and answers
anything else as a crash. Domain errors know nothing of HTTP.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose about a request."""


class InvalidRequest(DomainError):
    """A request field is missing or out of bounds; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
