"""The API against real Postgres and Redis: an app per test, three identities, a template."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from backend import create_app
from taskmanager.accounts import create_token, create_user
from taskmanager.models import Template
from taskmanager.settings import Settings
from taskmanager.storage.local import LocalStorage
from tests.taskmanager.factories import frame_template

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Identity:
    """A user with an API token."""

    id: uuid.UUID
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Return the Authorization header for this user."""
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Return the test settings with an empty static dir and fake jobs allowed."""
    return settings.model_copy(
        update={
            "static_dir": tmp_path / "static",
            "allow_fake_jobs": True,
            "secret_key": None,
        }
    )


@pytest.fixture
def app(api_settings: Settings) -> Iterator[Flask]:
    """Build the app for this test's database and Redis."""
    app = create_app(api_settings)
    yield app
    services = app.extensions["clipyard"]
    services.hub.stop()
    services.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client (cookies kept between its requests)."""
    return app.test_client()


def make_identity(app: Flask, email: str, role: str = "user") -> Identity:
    """Create a user with an API token."""
    sessions = app.extensions["clipyard"].sessions
    user = create_user(sessions, email, PASSWORD, role=role)
    _, secret = create_token(sessions, user.id, "tests")
    return Identity(user.id, email, secret)


@pytest.fixture
def alice(app: Flask) -> Identity:
    """Return a user."""
    return make_identity(app, "alice@example.com")


@pytest.fixture
def bob(app: Flask) -> Identity:
    """Return another user."""
    return make_identity(app, "bob@example.com")


@pytest.fixture
def operator(app: Flask) -> Identity:
    """Return an operator."""
    return make_identity(app, "ops@example.com", role="operator")


def png_bytes(width: int = 64, height: int = 48, color: Any = (200, 30, 30)) -> bytes:
    """Return a small PNG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def template(app: Flask) -> Template:
    """Store a template row with a poster in local storage; return it."""
    services = app.extensions["clipyard"]
    storage = services.storage
    assert isinstance(storage, LocalStorage)
    storage.upload("templates/frame/poster.png", io.BytesIO(png_bytes(32, 18)))
    # Not a real video: the API only hands the bytes over.
    storage.upload("templates/frame/video.mp4", io.BytesIO(b"\x00\x00\x00\x18ftypmp42"))
    row = frame_template(poster_key="templates/frame/poster.png")
    with services.sessions.begin() as session:
        session.add(row)
    return row


def upload_photo(client: FlaskClient, who: Identity, data: bytes | None = None) -> str:
    """Upload a photo as ``who``; return its id."""
    response = client.post(
        "/api/v1/uploads",
        data={"file": (io.BytesIO(data or png_bytes()), "photo.png")},
        headers=who.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    upload_id: str = response.json["id"]  # type: ignore[index]
    return upload_id


def submit(client: FlaskClient, who: Identity, upload: str, **extra: Any) -> Any:
    """Submit a job as ``who``; return the response."""
    headers = dict(who.headers)
    if "key" in extra:
        headers["Idempotency-Key"] = extra.pop("key")
    body = {"template": "frame", "upload_id": upload, **extra}
    return client.post("/api/v1/jobs", json=body, headers=headers)
