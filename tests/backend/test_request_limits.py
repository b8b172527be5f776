"""Bounded memory per request: JSON bodies have a small limit, answers list few errors,
and rate limits count a request before its body is read (issue 17, item 1)."""

from __future__ import annotations

import json
import time

from flask import Flask
from flask.testing import FlaskClient

from backend.problems import MAX_LISTED_ERRORS


def test_a_json_body_over_its_limit_is_refused_unread(client: FlaskClient) -> None:
    limit = client.application.extensions["clipyard"].settings.max_json_body_bytes
    body = json.dumps({f"k{i}": i for i in range(limit // 5)})
    assert len(body) > limit
    response = client.post("/api/v1/auth/login", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.json is not None
    assert response.json["limit"] == limit
    assert "JSON body" in response.json["detail"]


def test_an_answer_lists_at_most_a_few_field_errors(client: FlaskClient) -> None:
    body: dict[str, object] = {"email": "a@example.com", "password": "x" * 12}
    body.update({f"unknown{i}": i for i in range(500)})
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422
    problem = response.json
    assert problem is not None
    assert len(problem["errors"]) == MAX_LISTED_ERRORS
    assert problem["errors_not_listed"] == 500 - MAX_LISTED_ERRORS
    assert len(response.data) < 4096


def test_sign_in_is_rate_limited_before_its_body_is_read(app: Flask, client: FlaskClient) -> None:
    moment = time.time()
    app.extensions["clipyard"].limiter.clock = lambda: moment
    limit = app.extensions["clipyard"].settings.login_rate_per_minute
    statuses = [
        client.post(
            "/api/v1/auth/login", data="not json at all", content_type="application/json"
        ).status_code
        for _ in range(limit + 1)
    ]
    assert statuses[:limit] == [400] * limit
    assert statuses[limit] == 429
