"""Results, posters and uploads with Azure storage (Azurite): short-lived read-only redirects."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import update

from backend import create_app
from taskmanager.models import Job
from taskmanager.settings import Settings
from taskmanager.states import JobState
from taskmanager.storage.keys import upload_key
from tests.backend.conftest import Identity, make_identity, submit, upload_photo
from tests.services import Azurite
from tests.taskmanager.factories import frame_template


@pytest.fixture
def azure_app(api_settings: Settings, azurite: Azurite) -> Iterator[Flask]:
    """The API with its blobs in Azurite, one container per test."""
    settings = api_settings.model_copy(
        update={
            "storage_backend": "azure",
            "azure_storage_connection_string": SecretStr(azurite.connection_string),
            "azure_storage_container": f"api-{uuid.uuid4().hex[:12]}",
        }
    )
    app = create_app(settings)
    services = app.extensions["clipyard"]
    services.storage.upload("templates/frame/poster.jpg", io.BytesIO(b"\xff\xd8 a poster"))
    with services.sessions.begin() as session:
        session.add(frame_template(poster_key="templates/frame/poster.jpg"))
    yield app
    services.hub.stop()
    services.engine.dispose()


def test_result_and_poster_redirect_to_read_only_urls(azure_app: Flask) -> None:
    client: FlaskClient = azure_app.test_client()
    alice: Identity = make_identity(azure_app, "alice@example.com")
    bob: Identity = make_identity(azure_app, "bob@example.com")
    job_id = submit(client, alice, upload_photo(client, alice)).json["id"]
    storage = azure_app.extensions["clipyard"].storage
    video = bytes(range(256)) * 64
    storage.upload(f"outputs/{job_id}/video.mp4", io.BytesIO(video), content_type="video/mp4")
    storage.upload(f"outputs/{job_id}/poster.jpg", io.BytesIO(b"\xff\xd8 poster"))
    with azure_app.extensions["clipyard"].sessions.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state=JobState.SUCCEEDED.value,
                output_key=f"outputs/{job_id}/video.mp4",
                poster_key=f"outputs/{job_id}/poster.jpg",
            )
        )

    moved = client.get(f"/api/v1/jobs/{job_id}/result", headers=alice.headers)
    assert moved.status_code == 302
    assert moved.headers["Cache-Control"] == "no-store"
    location = moved.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["sp"] == ["r"]  # read only
    assert "sig" in query
    assert requests.get(location, timeout=10).content == video
    # Players seek through the storage URL itself.
    part = requests.get(location, headers={"Range": "bytes=10-19"}, timeout=10)
    assert (part.status_code, part.content) == (206, video[10:20])
    # Read-only: the URL cannot replace the result.
    assert (
        requests.put(
            location, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10
        ).status_code
        == 403
    )
    poster = client.get(f"/api/v1/jobs/{job_id}/poster", headers=alice.headers)
    assert requests.get(poster.headers["Location"], timeout=10).content == b"\xff\xd8 poster"
    # Someone else's job does not exist for them, redirect or not.
    assert client.get(f"/api/v1/jobs/{job_id}/result", headers=bob.headers).status_code == 404
    template_poster = client.get("/api/v1/templates/frame/poster", headers=alice.headers)
    assert template_poster.status_code == 302


def test_an_upload_is_stored_in_azure(azure_app: Flask) -> None:
    client = azure_app.test_client()
    alice = make_identity(azure_app, "alice@example.com")
    upload_id = upload_photo(client, alice)
    storage = azure_app.extensions["clipyard"].storage
    stored = b"".join(storage.iter_bytes(upload_key(alice.id, uuid.UUID(upload_id))))
    assert Image.open(io.BytesIO(stored)).size == (64, 48)
