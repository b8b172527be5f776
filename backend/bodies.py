"""Read request bodies and queries into pydantic models, and answer with them."""

from __future__ import annotations

from typing import TypeVar

from flask import Response, json, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from backend.problems import validation_problem

M = TypeVar("M", bound=BaseModel)


class InvalidBody(Exception):
    """The body failed validation; ``response`` is the problem to answer with."""

    def __init__(self, response: Response) -> None:
        super().__init__("invalid body")
        self.response = response


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


def validation_problem_for(field: str, message: str) -> Response:
    """Answer a 422 problem naming ``field``."""
    from backend.problems import problem

    return problem(422, "Invalid request", f"{field}: {message}", field=field,
                   errors=[{"field": field, "message": message}])  # fmt: skip


def answer(model: BaseModel, status: int = 200) -> Response:
    """Serialise ``model`` as the JSON response body."""
    return Response(model.model_dump_json(), status=status, mimetype="application/json")
