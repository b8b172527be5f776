"""The OpenAPI 3.1 document, built from the route table (``operations.py``) and the schemas."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from backend import schemas as s
from backend.browser import SESSION_COOKIE
from backend.operations import OPERATIONS, Operation

_MODELS: list[type[BaseModel]] = sorted(
    {
        m
        for op in OPERATIONS
        for m in [op.body, *op.answers.values()]
        if isinstance(m, type) and issubclass(m, BaseModel)
    }
    | {s.Problem},
    key=lambda m: m.__name__,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _response(status: int, answer: type[BaseModel] | str | None) -> dict[str, Any]:
    if answer is None:
        return {"description": "Redirect to a short-lived URL" if status == 302 else "No content"}
    if isinstance(answer, str):
        return {"description": "Bytes", "content": {answer: {"schema": {"type": "string"}}}}
    return {
        "description": answer.__doc__ or "",
        "content": {"application/json": {"schema": _ref(answer)}},
    }


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(s.Problem)}},
    }


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {str(k): _response(k, v) for k, v in op.answers.items()}
    errors = set(op.errors)
    if op.auth != "none":
        errors |= {401}
    if op.auth == "operator" or (op.auth == "user" and op.method != "get"):
        errors |= {403}  # wrong role, or a cookie session without its CSRF token
    if op.body is not None:
        errors |= {400, 413}
    for code in sorted(errors):
        responses[str(code)] = _problem(f"Problem ({code})")
    doc: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
        "operationId": f"{op.method}_{op.path}".replace("/", "_"),
    }
    if op.auth == "none":
        doc["security"] = []
    if op.parameters:
        doc["parameters"] = op.parameters
    if op.body == "multipart":
        doc["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    elif op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    return doc


@cache
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the whole API."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _MODELS if issubclass(m, s.Body)]
        + [(m, "serialization") for m in _MODELS if not issubclass(m, s.Body)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clipyard API",
            "version": "1",
            "description": "Errors are application/problem+json (RFC 9457). Browser "
            "sessions send X-CSRF-Token on every state-changing request.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
