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
_NOISY_LOGGERS = ("pgserver", "alembic", "azure", "urllib3")
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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever ``sys.stderr`` is at the time of each record.

    A plain StreamHandler keeps the stream it was built with, which goes stale when
    stderr is replaced (pytest's capture, a daemonised child).
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", log_format: str = "console") -> None:
    """Set up structlog over the standard library's logging for this process.

    TaskTiger's ``Worker`` insists on ``structlog.stdlib.BoundLogger``; routing through
    ``logging`` also gives third-party records (alembic, gunicorn, azure) the same
    format and the same redaction.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_event,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.set_name("clipyard")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "clipyard"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # These narrate every step at INFO (pgserver prints whole initdb transcripts).
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
