"""Sign-up, sign-in, cookie sessions with CSRF, API tokens and login rate limits."""

from __future__ import annotations

import time

from flask import Flask
from flask.testing import FlaskClient

from tests.backend.conftest import PASSWORD, Identity


def _signup(client: FlaskClient, email: str = "new@example.com") -> dict:  # type: ignore[type-arg]
    response = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[return-value]


def test_signup_signs_in_with_a_hardened_cookie(client: FlaskClient) -> None:
    body = _signup(client)
    assert body["user"]["role"] == "user"
    assert "password" not in str(body)
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json["user"]["email"] == "new@example.com"  # type: ignore[index]


def test_session_cookie_is_httponly_and_samesite(app: Flask) -> None:
    response = app.test_client().post(
        "/api/v1/auth/signup", json={"email": "c@example.com", "password": PASSWORD}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_signup_refuses_duplicates_and_bad_fields(client: FlaskClient) -> None:
    _signup(client, "dup@example.com")
    again = client.post(
        "/api/v1/auth/signup", json={"email": "DUP@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409
    short = client.post("/api/v1/auth/signup", json={"email": "x@example.com", "password": "short"})
    assert short.status_code == 422
    assert short.json["field"] == "password"  # type: ignore[index]
    bad_email = client.post("/api/v1/auth/signup", json={"email": "nope", "password": PASSWORD})
    assert bad_email.status_code == 422
    assert bad_email.json["field"] == "email"  # type: ignore[index]
    extra = client.post(
        "/api/v1/auth/signup",
        json={"email": "e@example.com", "password": PASSWORD, "role": "operator"},
    )
    assert extra.status_code == 422
    assert extra.json["field"] == "role"  # type: ignore[index]
    not_json = client.post("/api/v1/auth/signup", data="email=x", content_type="text/plain")
    assert not_json.status_code == 415
    assert not_json.mimetype == "application/problem+json"
    broken = client.post("/api/v1/auth/signup", data="{", content_type="application/json")
    assert broken.status_code == 400


def test_login_logout(client: FlaskClient, alice: Identity) -> None:
    wrong = client.post(
        "/api/v1/auth/login", json={"email": alice.email, "password": "wrong password"}
    )
    assert wrong.status_code == 401
    nobody = client.post(
        "/api/v1/auth/login", json={"email": "no@example.com", "password": PASSWORD}
    )
    assert nobody.status_code == 401
    ok = client.post(
        "/api/v1/auth/login", json={"email": "ALICE@example.com", "password": PASSWORD}
    )
    assert ok.status_code == 200
    csrf = ok.json["csrf_token"]  # type: ignore[index]
    assert client.get("/api/v1/auth/me").status_code == 200
    cookie = client.get_cookie("clipyard_session")
    assert cookie is not None
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401
    # A copy of the cookie taken before signing out no longer signs anyone in.
    client.set_cookie("clipyard_session", cookie.value)
    assert client.get("/api/v1/auth/me").status_code == 401


def test_cookie_post_without_csrf_token_is_refused(client: FlaskClient, alice: Identity) -> None:
    ok = client.post("/api/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    csrf = ok.json["csrf_token"]  # type: ignore[index]
    refused = client.post("/api/v1/tokens", json={"name": "cli"})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert "X-CSRF-Token" in refused.json["detail"]  # type: ignore[index]
    wrong = client.post("/api/v1/tokens", json={"name": "cli"}, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    accepted = client.post("/api/v1/tokens", json={"name": "cli"}, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201


def test_tokens_are_shown_once_listed_and_revoked(
    client: FlaskClient, alice: Identity, bob: Identity
) -> None:
    created = client.post(
        "/api/v1/tokens", json={"name": "laptop", "ttl_days": 30}, headers=alice.headers
    )
    assert created.status_code == 201
    secret = created.json["token"]  # type: ignore[index]
    token_id = created.json["id"]  # type: ignore[index]
    assert secret.startswith(created.json["prefix"])  # type: ignore[index]
    listed = client.get("/api/v1/tokens", headers=alice.headers).json["items"]  # type: ignore[index]
    assert {t["name"] for t in listed} == {"tests", "laptop"}
    assert all("token" not in t for t in listed)
    as_new = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/auth/me", headers=as_new).status_code == 200
    # Bob cannot see or revoke Alice's token.
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=bob.headers).status_code == 404
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=alice.headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=as_new).status_code == 401
    bad = client.post("/api/v1/tokens", json={"name": ""}, headers=alice.headers)
    assert bad.status_code == 422
    assert bad.json["field"] == "name"  # type: ignore[index]


def test_malformed_authorization_is_401(client: FlaskClient) -> None:
    for header in ("Basic abc", "Bearer", "Bearer cy_unknown"):
        response = client.get("/api/v1/auth/me", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_login_attempts_are_rate_limited(app: Flask, client: FlaskClient, alice: Identity) -> None:
    # One fixed moment: slow sign-ins on a busy machine must not straddle two windows.
    moment = time.time()
    app.extensions["clipyard"].limiter.clock = lambda: moment
    statuses = [
        client.post(
            "/api/v1/auth/login", json={"email": alice.email, "password": "wrong password"}
        ).status_code
        for _ in range(12)
    ]
    # Failed sign-ins of one account from one client are limited first (see
    # test_account_safety.py); every request of a client is limited too, more loosely.
    failures = app.extensions["clipyard"].settings.login_failures_per_minute
    assert statuses[:failures] == [401] * failures
    assert set(statuses[failures:]) == {429}
    limited = client.post("/api/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_signup_can_be_closed(app: Flask) -> None:
    services = app.extensions["clipyard"]
    services.settings = services.settings.model_copy(update={"allow_signup": False})
    response = app.test_client().post(
        "/api/v1/auth/signup", json={"email": "late@example.com", "password": PASSWORD}
    )
    assert response.status_code == 403
