"""The batch API: plan, rows, budget, cancel, retry-failed, report, finding by name or hash."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from taskmanager.models import Batch, Job, Run, Template
from tests.backend.conftest import Identity, png_bytes, upload_photo


def _batch(client: FlaskClient, operator: Identity, **body: Any) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/batches",
        json={"name": "spring", "budget_usd": "10", **body},
        headers=operator.headers,
    )
    assert answer.status_code == 201, answer.json
    created: dict[str, Any] = answer.json  # type: ignore[assignment]
    return created


def _rows(
    client: FlaskClient, operator: Identity, batch_id: str, rows: list[dict[str, Any]]
) -> Any:
    return client.post(
        f"/api/v1/batches/{batch_id}/jobs", json={"rows": rows}, headers=operator.headers
    )


def _row(row_id: str, upload: str, **extra: Any) -> dict[str, Any]:
    return {"row_id": row_id, "template": "frame", "upload_id": upload, **extra}


def _sessions(app: Flask) -> Any:
    return app.extensions["clipyard"].sessions


@pytest.fixture
def photo(client: FlaskClient, operator: Identity, template: Template) -> str:
    """Upload a photo as the operator; return its id."""
    return upload_photo(client, operator)


def test_plan_uses_the_default_model_then_the_calibrated_one(
    app: Flask, client: FlaskClient, operator: Identity, photo: str
) -> None:
    body = {"groups": [{"template": "frame", "count": 10}], "max_concurrent": 5}
    plan = client.post("/api/v1/batches/plan", json=body, headers=operator.headers).json
    assert plan["model"] == "default"
    assert plan["jobs"] == 10
    # frame is 5 s long: 3 s per video second at 1 vCPU plus 5 s of start-up.
    assert plan["groups"][0]["seconds_per_job"] == pytest.approx(20.0)
    assert plan["container_seconds"] == pytest.approx(200.0)
    assert plan["wall_seconds"] == pytest.approx(40.0)
    assert (
        Decimal(plan["spot_cost_usd"]) < Decimal(plan["cost_usd"]) < Decimal(plan["max_cost_usd"])
    )
    assert plan["prices"]["vcpu_hour_usd"] == "0.0405"

    batch = _batch(client, operator)
    _rows(client, operator, batch["id"], [_row("a", photo), _row("b", photo)])
    with _sessions(app).begin() as session:
        for index, job in enumerate(session.scalars(select(Job))):
            job.state = "succeeded"
            session.add(
                Run(
                    job_id=job.id,
                    attempt=1,
                    container_name=f"c{index}",
                    backend="local",
                    state="succeeded",
                    cpu=job.cpu,
                    memory_gb=job.memory_gb,
                    billed_seconds=10.0 + index * 2,
                )
            )
    plan = client.post("/api/v1/batches/plan", json=body, headers=operator.headers).json
    assert plan["model"] == "calibrated"
    assert plan["groups"][0]["sample_runs"] == 2
    # The median of 10 and 12 billed seconds over 5 s of video, at 1 vCPU.
    assert plan["groups"][0]["seconds_per_job"] == pytest.approx(11.0)


def test_plan_names_the_bad_field(client: FlaskClient, operator: Identity, photo: str) -> None:
    for body, field in [
        (
            {"groups": [{"template": "frame", "count": 1}, {"template": "nope", "count": 1}]},
            "groups[1].template",
        ),
        ({"groups": [{"template": "frame", "count": 0}]}, "groups.0.count"),
        ({"groups": [{"template": "frame", "count": 1, "cpu": "9"}]}, "groups.0.cpu"),
        ({"groups": []}, "groups"),
    ]:
        answer = client.post("/api/v1/batches/plan", json=body, headers=operator.headers)
        assert answer.status_code == 422
        assert answer.mimetype == "application/problem+json"
        assert answer.json["field"] == field


def test_rows_are_idempotent_and_take_the_batch_resources(
    app: Flask, client: FlaskClient, operator: Identity, photo: str
) -> None:
    batch = _batch(client, operator, cpu="2", memory_gb="3", max_runtime_s=120)
    first = _rows(client, operator, batch["id"], [_row("a", photo), _row("b", photo, cpu="0.5")])
    assert first.status_code == 200, first.json
    assert [r["is_created"] for r in first.json["items"]] == [True, True]
    again = _rows(client, operator, batch["id"], [_row("a", photo), _row("c", photo)])
    assert [(r["row_id"], r["is_created"]) for r in again.json["items"]] == [
        ("a", False),
        ("c", True),
    ]
    assert again.json["items"][0]["job_id"] == first.json["items"][0]["job_id"]
    with _sessions(app)() as session:
        jobs = {j.row_id: j for j in session.scalars(select(Job))}
    assert sorted(jobs) == ["a", "b", "c"]
    assert (jobs["a"].cpu, jobs["a"].memory_gb, jobs["a"].max_runtime_s) == (2, 3, 120)
    assert jobs["b"].cpu == Decimal("0.5")


def test_a_bad_row_is_named_by_its_index(
    client: FlaskClient, operator: Identity, bob: Identity, photo: str
) -> None:
    batch = _batch(client, operator)
    bobs = upload_photo(client, bob, png_bytes(color=(1, 2, 3)))
    answer = _rows(client, operator, batch["id"], [_row("a", photo), _row("b", bobs)])
    assert answer.status_code == 422
    assert answer.json["field"] == "rows[1].upload_id"
    wide = {"x": 0, "y": 0, "width": 9999, "height": 1}
    crop = _rows(client, operator, batch["id"], [_row("c", photo, crop=wide)])
    assert crop.json["field"] == "rows[0].crop"
    missing = _rows(client, operator, str(uuid.uuid4()), [_row("a", photo)])
    assert missing.status_code == 404


def test_budget_resumes_a_paused_batch_and_wakes_its_jobs(
    app: Flask, client: FlaskClient, operator: Identity, photo: str
) -> None:
    batch = _batch(client, operator, max_concurrent=2)
    _rows(client, operator, batch["id"], [_row(str(i), photo) for i in range(4)])
    with _sessions(app).begin() as session:
        session.execute(update(Batch).values(state="paused", paused_reason="budget_exhausted"))
    enqueuer = app.extensions["clipyard"].enqueuer
    tiger = enqueuer.tiger
    tiger.connection.flushdb()
    answer = client.post(
        f"/api/v1/batches/{batch['id']}/budget",
        json={"budget_usd": "25.5"},
        headers=operator.headers,
    )
    assert answer.status_code == 200, answer.json
    assert (answer.json["state"], answer.json["paused_reason"]) == ("open", None)
    assert Decimal(answer.json["budget_usd"]) == Decimal("25.5")
    # One wake-up per free slot, for the oldest queued jobs.
    queued = tiger.connection.zcard(tiger._key("queued", "batch"))
    assert queued == 2
    bad = client.post(
        f"/api/v1/batches/{batch['id']}/budget", json={"budget_usd": "-1"}, headers=operator.headers
    )
    assert (bad.status_code, bad.json["field"]) == (422, "budget_usd")


def test_cancel_then_nothing_more(
    app: Flask, client: FlaskClient, operator: Identity, photo: str
) -> None:
    batch = _batch(client, operator)
    _rows(client, operator, batch["id"], [_row(str(i), photo) for i in range(3)])
    answer = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=operator.headers)
    assert answer.status_code == 202
    assert answer.json["state"] == "cancelled"
    assert answer.json["jobs_by_state"] == {"cancelled": 3}
    more = _rows(client, operator, batch["id"], [_row("x", photo)])
    assert more.status_code == 409
    budget = client.post(
        f"/api/v1/batches/{batch['id']}/budget", json={"budget_usd": "5"}, headers=operator.headers
    )
    assert budget.status_code == 409


def test_retry_failed_and_report(
    app: Flask, client: FlaskClient, operator: Identity, photo: str
) -> None:
    batch = _batch(client, operator)
    _rows(client, operator, batch["id"], [_row(f"r{i}", photo) for i in range(5)])
    with _sessions(app).begin() as session:
        jobs = list(session.scalars(select(Job).order_by(Job.row_id)))
        jobs[0].state, jobs[0].output_key, jobs[0].actual_cost_usd = (
            "succeeded",
            "o",
            Decimal("0.1"),
        )
        jobs[1].state, jobs[1].error_code, jobs[1].error_message = "failed", "crash", "boom"
        jobs[1].attempt = 3
        jobs[2].state = "timed_out"
    page = client.get(f"/api/v1/batches/{batch['id']}/report?limit=2", headers=operator.headers)
    assert [r["row_id"] for r in page.json["items"]] == ["r0", "r1"]
    rest = client.get(
        f"/api/v1/batches/{batch['id']}/report?cursor={page.json['next_cursor']}",
        headers=operator.headers,
    ).json
    assert [r["row_id"] for r in rest["items"]] == ["r2", "r3", "r4"]
    assert rest["next_cursor"] is None
    first, second = page.json["items"]
    assert first["output_url"] == f"/api/v1/jobs/{first['job_id']}/result"
    assert first["cost_usd"] == "0.100000"
    assert (second["state"], second["attempts"], second["error_code"]) == ("failed", 3, "crash")
    bad = client.get(f"/api/v1/batches/{batch['id']}/report?cursor=zz", headers=operator.headers)
    assert (bad.status_code, bad.json["field"]) == (422, "cursor")

    retried = client.post(f"/api/v1/batches/{batch['id']}/retry-failed", headers=operator.headers)
    assert retried.status_code == 202
    assert retried.json["retried"] == 2
    assert retried.json["batch"]["jobs_by_state"] == {"queued": 4, "succeeded": 1}


def test_find_batch_by_name_and_upload_by_hash(
    client: FlaskClient, operator: Identity, alice: Identity, template: Template
) -> None:
    data = png_bytes(color=(9, 9, 9))
    upload = upload_photo(client, alice, data)
    digest = hashlib.sha256(data).hexdigest()
    found = client.get(f"/api/v1/uploads?sha256={digest}", headers=alice.headers).json["items"]
    assert [u["id"] for u in found] == [upload]
    others = client.get(f"/api/v1/uploads?sha256={digest}", headers=operator.headers).json
    assert others["items"] == []
    bad = client.get("/api/v1/uploads?sha256=xyz", headers=alice.headers)
    assert (bad.status_code, bad.json["field"]) == (422, "sha256")

    batch = _batch(client, operator, name="autumn")
    listed = client.get("/api/v1/batches?name=autumn", headers=operator.headers).json["items"]
    assert [b["id"] for b in listed] == [batch["id"]]
    assert client.get("/api/v1/batches?name=x", headers=operator.headers).json["items"] == []
