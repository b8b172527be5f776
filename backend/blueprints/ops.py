"""Operations: liveness, readiness, the summary (operators) and Prometheus metrics."""

from __future__ import annotations

import io
from dataclasses import asdict

from flask import Blueprint, Response
from sqlalchemy import text
from tasktiger import TaskTiger

from backend.auth import operator_required
from backend.bodies import answer
from backend.schemas import Status, SummaryOut
from backend.services import services
from taskmanager.ops import prometheus_text, summarize

bp = Blueprint("ops", __name__)
_PROBE_KEY = "readyz/probe"


@bp.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process serves requests (liveness: touches nothing else)."""
    return Response('{"status":"ok"}', mimetype="application/json")


@bp.get("/api/v1/health")
def health() -> Response:
    """Answer 200 if the database answers (kept for older clients)."""
    with services().engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return Response('{"status":"ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    """Answer 200 if the database, Redis and storage are reachable, else 503 naming which."""
    found = services()
    checks: dict[str, str] = {}
    try:
        with found.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        found.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        found.storage.upload(_PROBE_KEY, io.BytesIO(b"ok"), content_type="text/plain")
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unreachable: {type(exc).__name__}"
    is_ready = all(v == "ok" for v in checks.values())
    return answer(
        Status(status="ok" if is_ready else "unavailable", checks=checks), 200 if is_ready else 503
    )


@bp.get("/api/v1/ops/summary")
@operator_required
def summary() -> Response:
    """Return queue depths, containers, jobs by state, spend and failures."""
    found = services()
    snapshot = summarize(found.sessions, found.settings, _safe_tiger())
    return answer(SummaryOut.model_validate(asdict(snapshot)))


@bp.get("/metrics")
def metrics() -> Response:
    """Expose the summary's figures in the Prometheus text format."""
    found = services()
    snapshot = summarize(found.sessions, found.settings, _safe_tiger())
    return Response(prometheus_text(snapshot), mimetype="text/plain; version=0.0.4")


def _safe_tiger() -> TaskTiger | None:
    """Return TaskTiger if Redis answers, else None (the figures come without queues)."""
    found = services()
    try:
        found.redis.ping()
    except Exception:
        return None
    tiger: TaskTiger = found.tiger
    return tiger
