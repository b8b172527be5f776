"""Jobs: submit with idempotency, validation, listing with cursors, results, events."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from taskmanager.models import Job, Template
from taskmanager.states import JobState
from taskmanager.transitions import record_event
from tests.backend.conftest import Identity, submit, upload_photo


def test_submit_is_202_and_idempotent(
    app: Flask, client: FlaskClient, alice: Identity, template: Template
) -> None:
    upload_id = upload_photo(client, alice)
    first = submit(
        client, alice, upload_id, key="k-1", crop={"x": 0, "y": 0, "width": 32, "height": 24}
    )
    assert first.status_code == 202, first.json
    assert first.headers["Location"] == f"/api/v1/jobs/{first.json['id']}"
    assert first.json["state"] == "queued"
    assert first.json["crop"] == [0, 0, 32, 24]
    again = submit(
        client, alice, upload_id, key="k-1", crop={"x": 0, "y": 0, "width": 32, "height": 24}
    )
    assert again.status_code == 202
    assert again.json["id"] == first.json["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # The same key for a different request is refused, never silently answered.
    other = submit(client, alice, upload_id, key="k-1")
    assert other.status_code == 422
    assert other.mimetype == "application/problem+json"
    assert "different request" in other.json["detail"]
    with app.extensions["clipyard"].sessions() as session:
        assert session.query(Job).count() == 1
    assert app.extensions["clipyard"].enqueuer.is_queued(
        uuid.UUID(first.json["id"]), is_batch=False
    )


def test_submit_validation_names_the_field(
    client: FlaskClient, alice: Identity, bob: Identity, template: Template
) -> None:
    upload_id = upload_photo(client, alice)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"template": "nope"}, "template"),
        ({"upload_id": str(uuid.uuid4())}, "upload_id"),
        ({"upload_id": "not-a-uuid"}, "upload_id"),
        ({"crop": {"x": 0, "y": 0, "width": 1000, "height": 10}}, "crop"),
        ({"crop": {"x": -1, "y": 0, "width": 1, "height": 1}}, "crop.x"),
        ({"max_attempts": 99}, "max_attempts"),
        ({"colour": "red"}, "colour"),
        ({"batch_id": str(uuid.uuid4())}, "batch_id"),
    ]
    for extra, field in cases:
        response = submit(client, alice, upload_id, **extra)
        assert response.status_code == 422, (extra, response.json)
        assert response.mimetype == "application/problem+json"
        assert response.json["field"] == field, (extra, response.json)
    too_long = submit(client, alice, upload_id, key="k" * 201)
    assert too_long.status_code == 422
    assert too_long.json["field"] == "idempotency_key"
    # Bob cannot use Alice's upload: it does not exist for him.
    assert submit(client, bob, upload_id).json["field"] == "upload_id"
    missing = client.post("/api/v1/jobs", json={}, headers=alice.headers)
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json["errors"]} == {"template", "upload_id"}
    assert client.post("/api/v1/jobs", data="x", headers=alice.headers).status_code == 415


def test_list_filters_and_pages_with_a_cursor(
    client: FlaskClient, alice: Identity, bob: Identity, operator: Identity, template: Template
) -> None:
    upload_id = upload_photo(client, alice)
    ids = [submit(client, alice, upload_id).json["id"] for _ in range(5)]
    submit(client, bob, upload_photo(client, bob))
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/jobs", query_string=query, headers=alice.headers).json
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    everyone = client.get("/api/v1/jobs", headers=operator.headers).json["items"]
    assert len(everyone) == 6
    by_state = client.get("/api/v1/jobs?state=queued&template=frame", headers=alice.headers)
    assert len(by_state.json["items"]) == 5
    assert client.get("/api/v1/jobs?template=other", headers=alice.headers).json["items"] == []
    for query, field in (
        ("state=nope", "state"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=zzz", "cursor"),
        ("batch_id=1", "batch_id"),
    ):
        response = client.get(f"/api/v1/jobs?{query}", headers=alice.headers)
        assert response.status_code == 422
        assert response.json["field"] == field


def test_get_cancel_retry_and_other_users_get_404(
    client: FlaskClient, alice: Identity, bob: Identity, operator: Identity, template: Template
) -> None:
    job_id = submit(client, alice, upload_photo(client, alice)).json["id"]
    for path in ("", "/events", "/result", "/poster"):
        assert client.get(f"/api/v1/jobs/{job_id}{path}", headers=bob.headers).status_code == 404
    for path in ("/cancel", "/retry"):
        assert client.post(f"/api/v1/jobs/{job_id}{path}", headers=bob.headers).status_code == 404
    assert client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=alice.headers).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}", headers=operator.headers).status_code == 200
    early = client.post(f"/api/v1/jobs/{job_id}/retry", headers=alice.headers)
    assert early.status_code == 409
    assert client.get(f"/api/v1/jobs/{job_id}/result", headers=alice.headers).status_code == 409
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice.headers)
    assert cancelled.status_code == 202
    assert cancelled.json["state"] == "cancelled"
    retried = client.post(f"/api/v1/jobs/{job_id}/retry", headers=alice.headers)
    assert retried.status_code == 202
    assert retried.json["state"] == "queued"


def test_result_streams_with_range(
    app: Flask, client: FlaskClient, alice: Identity, template: Template
) -> None:
    job_id = submit(client, alice, upload_photo(client, alice)).json["id"]
    services = app.extensions["clipyard"]
    video = bytes(range(256)) * 40
    services.storage.upload(f"outputs/{job_id}/video.mp4", io.BytesIO(video))
    with services.sessions.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state=JobState.SUCCEEDED.value, output_key=f"outputs/{job_id}/video.mp4")
        )
    whole = client.get(f"/api/v1/jobs/{job_id}/result", headers=alice.headers)
    assert whole.status_code == 200
    assert whole.data == video
    part = client.get(
        f"/api/v1/jobs/{job_id}/result", headers={**alice.headers, "Range": "bytes=100-199"}
    )
    assert part.status_code == 206
    assert part.data == video[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(video)}"
    beyond = client.get(
        f"/api/v1/jobs/{job_id}/result", headers={**alice.headers, "Range": "bytes=99999-"}
    )
    assert beyond.status_code == 416
    shown = client.get(f"/api/v1/jobs/{job_id}", headers=alice.headers).json
    assert shown["result_url"] == f"/api/v1/jobs/{job_id}/result"


def _add_events(app: Flask, job_id: str, count: int) -> None:
    with app.extensions["clipyard"].sessions.begin() as session:
        for n in range(count):
            record_event(session, uuid.UUID(job_id), "progress", {"done": n, "total": 10})


def test_events_json_after(
    app: Flask, client: FlaskClient, alice: Identity, template: Template
) -> None:
    job_id = submit(client, alice, upload_photo(client, alice)).json["id"]
    _add_events(app, job_id, 3)
    all_events = client.get(f"/api/v1/jobs/{job_id}/events", headers=alice.headers).json
    assert [e["kind"] for e in all_events["items"]] == ["state", "progress", "progress", "progress"]
    assert all_events["is_terminal"] is False
    after = all_events["items"][1]["id"]
    rest = client.get(f"/api/v1/jobs/{job_id}/events?after={after}", headers=alice.headers).json
    assert [e["id"] for e in rest["items"]] == [e["id"] for e in all_events["items"][2:]]
    bad = client.get(f"/api/v1/jobs/{job_id}/events?after=-3", headers=alice.headers)
    assert bad.status_code == 422


def _frames(chunks: Iterator[bytes]) -> Iterator[dict[str, str]]:
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            fields = dict(
                line.split(": ", 1)
                for line in frame.splitlines()
                if ": " in line and not line.startswith(":")
            )
            if "id" in fields or fields.get("event") == "end":
                yield fields


def test_sse_resumes_with_last_event_id_and_misses_nothing(
    app: Flask, client: FlaskClient, alice: Identity, template: Template
) -> None:
    job_id = submit(client, alice, upload_photo(client, alice)).json["id"]
    _add_events(app, job_id, 2)
    sse = {**alice.headers, "Accept": "text/event-stream"}
    first = client.get(f"/api/v1/jobs/{job_id}/events", headers=sse, buffered=False)
    assert first.mimetype == "text/event-stream"
    frames = _frames(first.response)  # type: ignore[arg-type]
    got = [next(frames) for _ in range(3)]
    first.close()  # the client drops the connection
    last_id = got[-1]["id"]
    _add_events(app, job_id, 2)  # written while nobody listens
    second = client.get(
        f"/api/v1/jobs/{job_id}/events", headers={**sse, "Last-Event-ID": last_id}, buffered=False
    )
    frames = _frames(second.response)  # type: ignore[arg-type]
    resumed = [next(frames) for _ in range(2)]
    # A live event arrives while the stream waits; then the job ends and the stream closes.
    threading.Timer(0.2, _add_events, (app, job_id, 1)).start()
    resumed.append(next(frames))
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice.headers)
    rest = list(frames)
    second.close()
    ids = [int(f["id"]) for f in got + resumed + rest if "id" in f]
    assert ids == sorted(set(ids))
    assert len(ids) == 1 + 2 + 2 + 1 + 1  # submitted, 2, 2 offline, 1 live, cancelled
    assert rest[-1]["event"] == "end"
