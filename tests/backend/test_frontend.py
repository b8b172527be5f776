"""The built web app at / with an SPA fallback; API paths never fall back."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from taskmanager.settings import Settings


def test_serves_the_app_and_falls_back_to_index(
    client: FlaskClient, api_settings: Settings
) -> None:
    static = api_settings.static_dir
    assert isinstance(static, Path)
    assert client.get("/").status_code == 404  # nothing built yet
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<div id=app></div>")
    (static / "assets" / "app-1234.js").write_text("console.log(1)")
    index = client.get("/")
    assert index.status_code == 200
    assert b"id=app" in index.data
    assert client.get("/jobs/42").data == index.data
    asset = client.get("/assets/app-1234.js")
    assert asset.status_code == 200
    assert "max-age=31536000" in asset.headers["Cache-Control"]
    assert client.get("/assets/missing.js").status_code == 404
    missing_api = client.get("/api/v1/unknown")
    assert missing_api.status_code == 404
    assert missing_api.mimetype == "application/problem+json"


def test_unknown_method_on_app_route(app: Flask) -> None:
    assert app.test_client().delete("/").status_code == 405


def test_paths_that_climb_out_are_404_whether_or_not_the_file_exists(
    client: FlaskClient, api_settings: Settings
) -> None:
    """No oracle: /..%2f..%2fetc%2fpasswd answered 404 if the file existed, the app if not."""
    static = api_settings.static_dir
    assert isinstance(static, Path)
    static.mkdir(parents=True, exist_ok=True)
    (static / "index.html").write_text("<div id=app></div>")
    (static.parent / "secret.txt").write_text("not for you")
    for path in ("/..%2fsecret.txt", "/..%2fno-such-file", "/..%2f..%2f..%2fetc%2fpasswd"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"not for you" not in response.data


def test_api_paths_never_take_the_app_s_methods(client: FlaskClient) -> None:
    """OPTIONS on an API path listed GET because the app's catch-all route matched it."""
    allowed = client.options("/api/v1/auth/login").headers["Allow"]
    assert "GET" not in allowed
    assert "POST" in allowed
    assert client.get("/api/v1/auth/login").status_code == 405
