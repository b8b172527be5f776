"""The API's skeleton: health, and problem+json for every error."""

from __future__ import annotations

import pytest
from flask import Flask

from backend import create_app
from taskmanager.settings import Settings


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


def test_health_checks_the_database(app: Flask) -> None:
    response = app.test_client().get("/api/v1/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_unknown_path_is_problem_json(app: Flask) -> None:
    response = app.test_client().get("/api/v1/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json is not None
    assert response.json["status"] == 404
    assert response.json["instance"] == "/api/v1/nope"


def test_wrong_method_is_problem_json_with_allow(app: Flask) -> None:
    response = app.test_client().delete("/api/v1/health")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_problem_json(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 10
    response = app.test_client().post("/api/v1/health", data=b"x" * 100)
    assert response.status_code in (405, 413)
    assert response.mimetype == "application/problem+json"
