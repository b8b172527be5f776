"""Read request bodies into pydantic models, and answer with them.

The problems a bad body gets are built in ``backend.problems``; this module only
depends on it.
"""

from __future__ import annotations

from typing import TypeVar

from flask import Response, json, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from backend.problems import (
    InvalidBody,
    JsonBodyTooLarge,
    validation_problem,
    validation_problem_for,
)
from backend.services import services

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], *, is_rows: bool = False) -> M:
    """Return the JSON body as ``model``; a wrong type or bad field is a 4xx problem.

    ``is_rows``: a batch's rows (or a plan of them), which may be larger.
    """
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = json.loads(_bounded_body(is_rows) or b"null")
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidBody(validation_problem_for("body", "must be a JSON object"))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidBody(validation_problem(exc)) from exc


def _bounded_body(is_rows: bool) -> bytes:
    """Read the body, refusing (413) one larger than the JSON limit without parsing it.

    The upload limit (``MAX_CONTENT_LENGTH``) is far too large for JSON: a few MB of
    distinct keys cost the parser, and the problem listing them, gigabytes.
    """
    settings = services().settings
    limit = settings.max_json_rows_body_bytes if is_rows else settings.max_json_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise JsonBodyTooLarge(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise JsonBodyTooLarge(limit)
    return data


def answer(model: BaseModel, status: int = 200) -> Response:
    """Serialise ``model`` as the JSON response body."""
    return Response(model.model_dump_json(), status=status, mimetype="application/json")
