"""Operations: liveness, readiness, the summary (operators) and Prometheus metrics."""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict

from flask import Blueprint, Response, current_app, request
from pydantic import SecretStr
from sqlalchemy import text
from tasktiger import TaskTiger
from werkzeug.exceptions import Forbidden

from backend.auth import operator_required, require_caller
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
        found.storage.exists(_PROBE_KEY)  # a read: an anonymous probe writes nothing
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
    """Expose the summary's figures in the Prometheus text format (scraper or operator).

    The figures (a scan of jobs and runs) are computed at most once per
    ``metrics_cache_s`` per process, however often they are asked for.
    """
    found = services()
    if not _is_scraper(found.settings.metrics_token) and not require_caller().is_operator:
        raise Forbidden("only operators and the metrics scraper may read the metrics")
    now = time.monotonic()
    # The last figures this app served: (monotonic time, text).
    cache: dict[str, tuple[float, str]] = current_app.extensions.setdefault("metrics_cache", {})
    cached = cache.get("text")
    if cached is None or now - cached[0] > found.settings.metrics_cache_s:
        snapshot = summarize(found.sessions, found.settings, _safe_tiger())
        cached = cache["text"] = (now, prometheus_text(snapshot))
    return Response(cached[1], mimetype="text/plain; version=0.0.4")


metrics.auth = "operator"  # type: ignore[attr-defined]


def _is_scraper(token: SecretStr | None) -> bool:
    """Tell whether the request carries the configured scraper token."""
    if token is None:
        return False
    sent = request.headers.get("Authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    return hmac.compare_digest(sent.encode(errors="replace"), expected.encode())


def _safe_tiger() -> TaskTiger | None:
    """Return TaskTiger if Redis answers, else None (the figures come without queues)."""
    found = services()
    try:
        found.redis.ping()
    except Exception:
        return None
    tiger: TaskTiger = found.tiger
    return tiger
