"""Read request bodies into pydantic models, and answer with them.

The problems a bad body gets are built in ``backend.problems``; this module only
depends on it.
"""

from __future__ import annotations

from typing import TypeVar

from flask import Response, json, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from backend.problems import InvalidBody, validation_problem, validation_problem_for

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M]) -> M:
    """Return the JSON body as ``model``; a wrong type or bad field is a 4xx problem."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidBody(validation_problem_for("body", "must be a JSON object"))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidBody(validation_problem(exc)) from exc


def answer(model: BaseModel, status: int = 200) -> Response:
    """Serialise ``model`` as the JSON response body."""
    return Response(model.model_dump_json(), status=status, mimetype="application/json")
