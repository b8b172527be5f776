"""Photos checked at once are capped per user and per process (issue 17, item 1)."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from typing import IO, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.uploadslots import TooManyUploads, UploadSlots
from taskmanager.storage import Storage
from tests.backend.conftest import Identity, png_bytes

# How long a test waits for the uploads it started to reach storage.
_DEADLINE_S = 30


def _post(client: FlaskClient, who: Identity, data: bytes | None = None) -> Any:
    return client.post(
        "/api/v1/uploads",
        data={"file": (io.BytesIO(png_bytes() if data is None else data), "photo.png")},
        headers=who.headers,
        content_type="multipart/form-data",
    )


def test_slots_are_capped_per_user_and_per_process() -> None:
    slots = UploadSlots(per_process=3, per_user=2)
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    slots.acquire(alice)
    slots.acquire(alice)
    with pytest.raises(TooManyUploads, match="at most 2 photos may be checked at once per user"):
        slots.acquire(alice)
    slots.acquire(bob)
    with pytest.raises(TooManyUploads, match="at once on this server"):
        slots.acquire(carol)
    slots.release(alice)
    with slots.holding(carol), pytest.raises(TooManyUploads):
        slots.acquire(bob)
    slots.acquire(bob)


def test_a_third_upload_of_one_user_is_429_while_two_are_checked(
    app: Flask, alice: Identity, bob: Identity
) -> None:
    services = app.extensions["clipyard"]
    assert services.uploads.per_user == 2
    client = app.test_client()
    services.uploads.acquire(alice.id)
    services.uploads.acquire(alice.id)
    refused = _post(client, alice)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json["limit"] == 2
    assert "per user" in refused.json["detail"]
    assert _post(client, bob).status_code == 201  # others are not held up
    services.uploads.release(alice.id)
    assert _post(client, alice).status_code == 201
    services.uploads.release(alice.id)


def test_the_process_cap_refuses_everyone(app: Flask, alice: Identity, bob: Identity) -> None:
    services = app.extensions["clipyard"]
    services.uploads = UploadSlots(per_process=1, per_user=1)
    services.uploads.acquire(bob.id)
    refused = _post(app.test_client(), alice)
    assert refused.status_code == 429
    assert "on this server" in refused.json["detail"]


def test_a_refused_or_failed_check_gives_its_slot_back(app: Flask, alice: Identity) -> None:
    services = app.extensions["clipyard"]
    services.uploads = UploadSlots(per_process=10, per_user=1)
    client = app.test_client()
    assert _post(client, alice, b"not a photo").status_code == 415
    assert _post(client, alice, b"").status_code == 422
    assert _post(client, alice, png_bytes(300, 200, None)[:200]).status_code == 422
    assert _post(client, alice).status_code == 201
    services.uploads.acquire(alice.id)  # would raise had any of them kept its slot


class _GatedStorage:
    """The real storage, whose uploads wait for a gate: checks in flight, held open."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.gate = threading.Event()
        self.arrived = threading.Semaphore(0)

    def upload(self, key: str, data: IO[bytes], **kwargs: Any) -> None:
        """Wait for the gate, then store."""
        self.arrived.release()
        assert self.gate.wait(_DEADLINE_S), "the test never opened the gate"
        self._inner.upload(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def gated(app: Flask) -> Iterator[_GatedStorage]:
    """Put a gate in front of the app's storage; open it at the end whatever happens."""
    services = app.extensions["clipyard"]
    storage = _GatedStorage(services.storage)
    services.storage = storage
    yield storage
    storage.gate.set()


def test_concurrent_uploads_of_one_user(
    app: Flask, alice: Identity, bob: Identity, gated: _GatedStorage
) -> None:
    statuses: list[int] = []

    def upload() -> None:
        statuses.append(_post(app.test_client(), alice).status_code)

    senders = [threading.Thread(target=upload) for _ in range(2)]
    for sender in senders:
        sender.start()
    for _ in senders:  # both are being checked (held at storage)
        assert gated.arrived.acquire(timeout=_DEADLINE_S)
    third = _post(app.test_client(), alice)
    assert third.status_code == 429
    assert third.headers["Retry-After"] == "1"
    assert third.json["title"] == "Too many uploads"
    gated.gate.set()
    for sender in senders:
        sender.join(_DEADLINE_S)
    assert statuses == [201, 201]
    assert _post(app.test_client(), alice).status_code == 201
