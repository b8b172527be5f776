"""Batches, the operations summary, liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from decimal import Decimal

import redis
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from taskmanager.models import Template
from tests.backend.conftest import Identity, submit, upload_photo


def test_batches_create_list_show(
    client: FlaskClient, operator: Identity, template: Template
) -> None:
    created = client.post(
        "/api/v1/batches",
        json={"name": "spring", "budget_usd": "12.345678", "max_concurrent": 5, "cpu": "2"},
        headers=operator.headers,
    )
    assert created.status_code == 201, created.json
    batch = created.json
    assert batch["budget_usd"] == "12.345678"
    assert Decimal(batch["spent_usd"]) == 0
    job = submit(
        client, operator, upload_photo(client, operator), batch_id=batch["id"], row_id="r1"
    )
    assert job.status_code == 202
    shown = client.get(f"/api/v1/batches/{batch['id']}", headers=operator.headers).json
    assert shown["jobs_by_state"] == {"queued": 1}
    listed = client.get("/api/v1/batches", headers=operator.headers).json["items"]
    assert [b["name"] for b in listed] == ["spring"]
    same_name = client.post(
        "/api/v1/batches", json={"name": "spring", "budget_usd": 1}, headers=operator.headers
    )
    assert same_name.status_code == 409
    for body, field in (
        ({"name": "x", "budget_usd": "-1"}, "budget_usd"),
        ({"name": "x", "budget_usd": "0.0000001"}, "budget_usd"),
        ({"name": "x", "budget_usd": "1", "max_concurrent": 0}, "max_concurrent"),
        ({"name": "", "budget_usd": "1"}, "name"),
        ({"name": "x", "budget_usd": "1", "cpu": "64"}, "cpu"),
    ):
        response = client.post("/api/v1/batches", json=body, headers=operator.headers)
        assert response.status_code == 422, body
        assert response.json["field"] == field


def test_summary_and_metrics(
    client: FlaskClient, alice: Identity, operator: Identity, template: Template
) -> None:
    submit(client, alice, upload_photo(client, alice))
    summary = client.get("/api/v1/ops/summary", headers=operator.headers)
    assert summary.status_code == 200
    body = summary.json
    assert body["jobs_by_state"]["queued"] == 1
    assert body["queues"]["interactive"]["queued"] == 1
    assert body["running_containers"] == 0
    assert body["spend_today_usd"] == "0"
    assert client.get("/api/v1/ops/summary", headers=alice.headers).status_code == 403
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=alice.headers).status_code == 403
    metrics = client.get("/metrics", headers=operator.headers)
    assert metrics.status_code == 200
    text = metrics.get_data(as_text=True)
    assert 'clipyard_jobs{state="queued"} 1' in text
    assert 'clipyard_queue_depth{queue="interactive",state="queued"} 1' in text
    assert "# TYPE clipyard_spend_usd_total counter" in text
    assert "clipyard_supervision_lag_seconds 0.0" in text


def test_liveness_and_readiness(app: Flask, client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}
    services = app.extensions["clipyard"]
    services.redis = redis.Redis(unix_socket_path="/nonexistent/redis.sock")
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json["checks"]["redis"].startswith("unreachable")
    assert down.json["checks"]["database"] == "ok"
    assert "sock" not in str(down.json)


def test_request_id_is_echoed(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    assert (
        len(client.get("/healthz", headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"])
        == 32
    )


def test_metrics_take_the_scrapers_token_and_are_cached(
    app: Flask, client: FlaskClient, alice: Identity, template: Template
) -> None:
    services = app.extensions["clipyard"]
    services.settings = services.settings.model_copy(
        update={"metrics_token": SecretStr("scraper-secret"), "metrics_cache_s": 60.0}
    )
    scraper = {"Authorization": "Bearer scraper-secret"}
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    first = client.get("/metrics", headers=scraper)
    assert first.status_code == 200
    assert "clipyard_jobs" in first.get_data(as_text=True)
    submit(client, alice, upload_photo(client, alice))
    # Within the cache's lifetime the figures are not computed again.
    assert client.get("/metrics", headers=scraper).data == first.data


def test_readiness_writes_nothing(app: Flask, client: FlaskClient) -> None:
    storage = app.extensions["clipyard"].storage
    assert client.get("/readyz").status_code == 200
    assert not storage.exists("readyz/probe")
