"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

Domain errors know nothing of HTTP; ``DOMAIN_ERRORS`` is the one table that gives each
its status code.

This module builds every problem response. ``bodies`` (which reads request bodies)
imports from here, never the other way: that is why ``InvalidBody``, the error that
carries a ready-made 422, lives here next to its handler rather than in ``bodies``.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, json, request
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.ratelimit import RateLimited
from backend.streams import TooManyStreams
from backend.uploadslots import TooManyUploads
from taskmanager.accounts import (
    EmailTaken,
    InvalidAccountRequest,
    InvalidCredentials,
    TokenNotFound,
)
from taskmanager.batches.service import BatchNameTaken, BatchNotFound, BatchStateConflict
from taskmanager.errors import InvalidRequest
from taskmanager.jobs import (
    IdempotencyKeyReused,
    JobNotFound,
    JobStateConflict,
    RetryLimitReached,
    TooManyLiveJobs,
)
from taskmanager.storage.base import BlobNotFound, StorageUnavailable
from taskmanager.templates import TemplateNotFound
from taskmanager.uploads import (
    CorruptImage,
    EmptyUpload,
    ImageTooLarge,
    UnsupportedImage,
    UploadNotFound,
    UploadTooLarge,
)

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)

# Domain error -> (status, title). The most specific class must come first.
# What a 503 for an unreachable database or Redis asks clients to wait, in seconds.
_UNAVAILABLE_RETRY_AFTER_S = 2

DOMAIN_ERRORS: list[tuple[type[Exception], int, str]] = [
    (TooManyStreams, 429, "Too many streams"),
    (TooManyUploads, 429, "Too many uploads"),
    (TooManyLiveJobs, 429, "Too many jobs"),
    (RetryLimitReached, 409, "Retry limit reached"),
    (JobNotFound, 404, "Not Found"),
    (BatchNotFound, 404, "Not Found"),
    (TemplateNotFound, 404, "Not Found"),
    (TokenNotFound, 404, "Not Found"),
    (BlobNotFound, 404, "Not Found"),
    (UploadNotFound, 404, "Not Found"),
    (InvalidRequest, 422, "Invalid request"),
    (InvalidAccountRequest, 422, "Invalid request"),
    (JobStateConflict, 409, "Conflict"),
    # As the IETF idempotency-key draft says: a key reused with another payload is 422.
    (IdempotencyKeyReused, 422, "Idempotency key reused"),
    (EmailTaken, 409, "Email taken"),
    (BatchNameTaken, 409, "Batch name taken"),
    (BatchStateConflict, 409, "Conflict"),
    (InvalidCredentials, 401, "Invalid credentials"),
    (EmptyUpload, 422, "Empty file"),
    (UploadTooLarge, 413, "File too large"),
    (UnsupportedImage, 415, "Unsupported image"),
    (ImageTooLarge, 422, "Image too large"),
    (CorruptImage, 422, "Corrupt image"),
    (RateLimited, 429, "Too many requests"),
    (StorageUnavailable, 503, "Storage unavailable"),
]


class AuthRequired(Exception):
    """The request carries no valid session or token."""


class Forbidden(Exception):
    """The caller is signed in but lacks the role, or the CSRF token is missing."""


DOMAIN_ERRORS += [(AuthRequired, 401, "Unauthorized"), (Forbidden, 403, "Forbidden")]


class InvalidBody(Exception):
    """The body failed validation; ``response`` is the problem to answer with."""

    def __init__(self, response: Response) -> None:
        super().__init__("invalid body")
        self.response = response


# How many field errors one 422 answer lists at most.
MAX_LISTED_ERRORS = 20


class JsonBodyTooLarge(RequestEntityTooLarge):
    """A JSON body over its own limit (far below the upload limit)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON body is larger than {limit} bytes")
        self.limit = limit


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body["instance"] = request.path
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)


def _domain_problem(error: Exception) -> Response | None:
    for kind, status, title in DOMAIN_ERRORS:
        if isinstance(error, kind):
            extra: dict[str, Any] = {}
            if hasattr(error, "field"):
                extra["field"] = error.field
            if hasattr(error, "limit"):
                extra["limit"] = error.limit
            detail = str(error) or None
            if isinstance(error, StorageUnavailable):
                # The SDK's words name internal hosts: they go to the log, not the client.
                log.warning("storage unavailable", path=request.path, error=detail)
                detail = "blob storage is unreachable right now; try again shortly"
            response = problem(status, title, detail, **extra)
            # Any refusal "for now" says when to ask again (rate limits, slots, live jobs).
            retry_after_s = getattr(error, "retry_after_s", None)
            if retry_after_s is not None:
                response.headers["Retry-After"] = str(retry_after_s)
            if isinstance(error, AuthRequired):
                response.headers["WWW-Authenticate"] = 'Bearer realm="clipyard"'
            return response
    return None


def validation_problem(error: ValidationError, where: str = "") -> Response:
    """Answer a request body or query that failed validation, naming each bad field.

    At most ``MAX_LISTED_ERRORS`` are listed (and how many more there were): a body of
    many bad keys must not make an answer larger than itself.
    """
    errors = [
        {"field": where + ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in error.errors(include_url=False)[:MAX_LISTED_ERRORS]
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    extra: dict[str, Any] = {}
    if error.error_count() > MAX_LISTED_ERRORS:
        extra["errors_not_listed"] = error.error_count() - MAX_LISTED_ERRORS
    return problem(
        422,
        "Invalid request",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=errors,
        **extra,
    )


def validation_problem_for(field: str, message: str) -> Response:
    """Answer a 422 problem naming ``field``."""
    errors = [{"field": field, "message": message}]
    return problem(422, "Invalid request", f"{field}: {message}", field=field, errors=errors)


def register_problem_handlers(app: Flask) -> None:
    """Answer every HTTP error (404, 405, 413, ...), domain error and crash as problem+json."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if isinstance(error, JsonBodyTooLarge):
            return problem(413, "Request too large", error.description, limit=error.limit)
        if isinstance(error, RequestEntityTooLarge):
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = f"the request body is larger than {limit} bytes"
            return problem(413, "Request too large", detail, limit=limit)
        response = problem(error.code or 500, error.name, error.description)
        if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(ValidationError)
    def _invalid(error: ValidationError) -> Response:
        return validation_problem(error)

    @app.errorhandler(InvalidBody)
    def _invalid_body(error: InvalidBody) -> Response:
        return error.response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        found = _domain_problem(error)
        if found is not None:
            return found
        if isinstance(error, OperationalError | InterfaceError | RedisConnectionError):
            # A service restarting or away: the request may succeed when retried, and
            # clients (ours retry 502-504) must be told so, not handed a 500.
            log.warning(
                "a backing service is unreachable", path=request.path, error=type(error).__name__
            )
            response = problem(
                503,
                "Service Unavailable",
                "a service the API depends on is unreachable; try again shortly",
            )
            response.headers["Retry-After"] = str(_UNAVAILABLE_RETRY_AFTER_S)
            return response
        log.exception("unhandled error", path=request.path)
        return problem(500, "Internal Server Error", "an unexpected error occurred; it was logged")
