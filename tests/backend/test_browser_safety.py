"""Browser safety on shared hosting (issue 17, item 5): headers, the cookie, one session."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from backend.app import create_app
from taskmanager.settings import Settings
from tests.backend.conftest import PASSWORD, Identity


def test_pages_may_run_only_their_own_scripts_and_never_be_framed(
    client: FlaskClient, api_settings: Settings
) -> None:
    static = api_settings.static_dir
    assert isinstance(static, Path)
    static.mkdir(parents=True, exist_ok=True)
    (static / "index.html").write_text("<div id=app></div>")
    (static / "api-docs").mkdir()
    (static / "api-docs" / "swagger-ui-bundle.js").write_text("window.SwaggerUIBundle = null;")
    for path in ("/", "/api/docs"):
        page = client.get(path)
        assert page.status_code == 200, path
        policy = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy
        assert page.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    data = client.get("/healthz")
    assert data.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_https_gets_hsts_and_a_host_prefixed_session_cookie(
    api_settings: Settings, alice: Identity
) -> None:
    app = create_app(api_settings.model_copy(update={"session_cookie_secure": True}))
    try:
        client = app.test_client()
        signed_in = client.post(
            "/api/v1/auth/login",
            json={"email": alice.email, "password": PASSWORD},
            base_url="https://localhost",
        )
        assert signed_in.status_code == 200
        assert "max-age=" in signed_in.headers["Strict-Transport-Security"]
        cookie = signed_in.headers["Set-Cookie"]
        assert cookie.startswith("__Host-clipyard_session=")
        assert "Secure" in cookie
        assert "Path=/" in cookie
        assert "Domain" not in cookie
        assert signed_in.headers["Cache-Control"] == "no-store"  # it carries the CSRF token
    finally:
        services = app.extensions["clipyard"]
        services.hub.stop()
        services.engine.dispose()


def test_a_request_with_two_session_cookies_is_refused(app: Flask) -> None:
    client = app.test_client(use_cookies=False)  # the header as sent, not a cookie jar
    response = client.get(
        "/api/v1/auth/me", headers={"Cookie": "clipyard_session=a; clipyard_session=b"}
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
