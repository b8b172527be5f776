"""What one user may ask of the shared capacity (issue 17, item 3): live jobs, attempts,
runtime and manual retries are bounded for users, not for operators."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.backend.conftest import Identity, submit, upload_photo


def _limit(app: Flask, **changes: int) -> None:
    services = app.extensions["clipyard"]
    services.settings = services.settings.model_copy(update=changes)


def test_a_user_s_live_jobs_are_bounded_but_an_operator_s_are_not(
    app: Flask, client: FlaskClient, alice: Identity, operator: Identity, template: object
) -> None:
    _limit(app, user_max_live_jobs=2)
    photo = upload_photo(client, alice)
    assert [submit(client, alice, photo).status_code for _ in range(2)] == [202, 202]
    refused = submit(client, alice, photo)
    assert refused.status_code == 429
    assert refused.json is not None
    assert "2 jobs" in refused.json["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    ops_photo = upload_photo(client, operator)
    assert [submit(client, operator, ops_photo).status_code for _ in range(3)] == [202] * 3


def test_a_user_s_attempts_and_runtime_are_bounded(
    app: Flask, client: FlaskClient, alice: Identity, template: object
) -> None:
    _limit(app, user_max_attempts=2, user_max_runtime_s=600)
    photo = upload_photo(client, alice)
    too_many = submit(client, alice, photo, max_attempts=3)
    assert too_many.status_code == 422
    assert too_many.json is not None
    assert too_many.json["field"] == "max_attempts"
    too_long = submit(client, alice, photo, max_runtime_s=601)
    assert too_long.status_code == 422
    assert too_long.json is not None
    assert too_long.json["field"] == "max_runtime_s"
    assert submit(client, alice, photo, max_attempts=2, max_runtime_s=600).status_code == 202


def test_a_job_is_retried_by_hand_a_bounded_number_of_times(
    app: Flask, client: FlaskClient, alice: Identity, template: object
) -> None:
    _limit(app, user_max_retries_per_job=2)
    job = submit(client, alice, upload_photo(client, alice)).json
    assert job is not None
    path = f"/api/v1/jobs/{job['id']}"
    for _ in range(2):
        assert client.post(f"{path}/cancel", headers=alice.headers).status_code in (200, 202)
        assert client.post(f"{path}/retry", headers=alice.headers).status_code == 202
    assert client.post(f"{path}/cancel", headers=alice.headers).status_code in (200, 202)
    refused = client.post(f"{path}/retry", headers=alice.headers)
    assert refused.status_code == 409
    assert refused.json is not None
    assert "retried 2 times" in refused.json["detail"]
