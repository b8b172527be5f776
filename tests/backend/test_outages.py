"""A backing service away is a 503 with Retry-After, never a 500 (clients retry 503s)."""

from __future__ import annotations

import io

from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from taskmanager.storage.base import StorageUnavailable
from tests.backend.conftest import Identity, png_bytes


def test_an_unreachable_database_answers_503(app: Flask, alice: Identity) -> None:
    services = app.extensions["clipyard"]
    gone = create_engine("postgresql+psycopg2://nobody@/nowhere?host=/nonexistent")
    services.engine = gone
    services.sessions = sessionmaker(bind=gone)
    response = app.test_client().get("/api/v1/jobs", headers=alice.headers)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    assert "nonexistent" not in response.get_data(as_text=True)  # no internals


class _UnreachableStorage:
    """A store whose every write fails the way the Azure SDK's words would."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "upload":

            def fail(*_: object, **__: object) -> None:
                raise StorageUnavailable(
                    "blob storage unreachable while handling uploads/x: connection to "
                    "internal-host.blob.core.windows.net refused"
                )

            return fail
        return getattr(self._inner, name)


def test_a_storage_outage_names_no_internal_host(app: Flask, alice: Identity) -> None:
    services = app.extensions["clipyard"]
    services.storage = _UnreachableStorage(services.storage)
    client = app.test_client()
    response = client.post(
        "/api/v1/uploads",
        data={"file": (io.BytesIO(png_bytes()), "photo.png")},
        headers=alice.headers,
    )
    assert response.status_code == 503
    assert "internal-host" not in response.get_data(as_text=True)
