"""Bad input is a 4xx that names what was wrong, never a 500 (issue 17, item 7)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from taskmanager.limits import is_decimal_number
from tests.backend.conftest import PASSWORD, Identity


def test_a_non_ascii_csrf_token_is_refused_not_a_crash(app: Flask, alice: Identity) -> None:
    client = app.test_client()
    signed_in = client.post("/api/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert signed_in.status_code == 200
    response = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "jéton"})
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"


def test_a_limit_in_unicode_digits_is_a_422(client: FlaskClient, operator: Identity) -> None:
    batch = client.post(
        "/api/v1/batches", json={"name": "b", "budget_usd": "1"}, headers=operator.headers
    ).json
    assert batch is not None
    response = client.get(f"/api/v1/batches/{batch['id']}/report?limit=²", headers=operator.headers)
    assert response.status_code == 422
    assert response.json is not None
    assert response.json["field"] == "limit"


def test_whole_numbers_are_ascii_digits_only() -> None:
    assert is_decimal_number("42")
    for text in ("²", "٣", "4\n", "", "-1", "1.0", "1" * 19):
        assert not is_decimal_number(text), text
