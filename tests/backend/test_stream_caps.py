"""Event streams cannot starve the server (issue 17, item 2): caps per user and process."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask

from backend.streams import StreamSlots, TooManyStreams
from tests.backend.conftest import Identity, submit, upload_photo


def test_slots_are_capped_per_user_and_per_process() -> None:
    slots = StreamSlots(per_process=3, per_user=2)
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    slots.acquire(alice)
    slots.acquire(alice)
    with pytest.raises(TooManyStreams, match="per user"):
        slots.acquire(alice)
    slots.acquire(bob)
    with pytest.raises(TooManyStreams, match="on this server"):
        slots.acquire(carol)
    slots.release(alice)
    slots.acquire(carol)


def test_a_stream_beyond_the_cap_is_a_429_and_polling_still_works(
    app: Flask, alice: Identity, template: object
) -> None:
    services = app.extensions["clipyard"]
    services.streams = StreamSlots(per_process=10, per_user=1)
    client = app.test_client()
    job = submit(client, alice, upload_photo(client, alice)).json
    assert job is not None
    path = f"/api/v1/jobs/{job['id']}/events"
    stream_headers = {**alice.headers, "Accept": "text/event-stream"}
    first = client.get(path, headers=stream_headers, buffered=False)
    assert first.status_code == 200
    refused = client.get(path, headers=stream_headers)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.get(f"{path}?after=0", headers=alice.headers).status_code == 200
    first.close()  # the slot comes back when the stream's connection closes
    second = client.get(path, headers=stream_headers, buffered=False)
    assert second.status_code == 200
    second.close()
