"""Structured logging (structlog) with secrets redacted before anything is written.

TaskTiger's ``Worker`` logs through structlog too, so this must run before a worker
starts.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# A SAS signature, an Authorization header value, a password in a URL, a bearer token.
_SECRET_PATTERNS = (
    # Only the signature of a SAS is secret; expiry and permissions stay readable.
    (re.compile(r"([?&]sig=)[^&\s\"']+", re.IGNORECASE), r"\1REDACTED"),
    (re.compile(r"(AccountKey=)[^;\s\"']+", re.IGNORECASE), r"\1REDACTED"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1REDACTED"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s/]+(@)"), r"\1REDACTED\2"),
)
_NOISY_LOGGERS = ("pgserver", "alembic", "azure", "urllib3", "waitress.queue")
_SECRET_FIELDS = frozenset({"password", "token", "secret", "authorization", "sas", "api_key"})


def redact(text: str) -> str:
    """Return ``text`` with SAS signatures, account keys, tokens and passwords replaced."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if key.lower() in _SECRET_FIELDS and value is not None:
            event_dict[key] = "REDACTED"
        elif isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def configure_logging(level: str = "INFO", log_format: str = "console") -> None:
    """Set up structlog (and the standard library's logging) for this process."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    # These narrate every step at INFO (pgserver prints whole initdb transcripts).
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
