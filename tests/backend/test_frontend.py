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
