"""A backing service away is a 503 with Retry-After, never a 500 (clients retry 503s)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from tests.backend.conftest import Identity


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
