"""The application factory: ``create_app(settings)`` builds the API; nothing at import time."""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from datetime import timedelta
from pathlib import Path

import structlog
from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.blueprints import accounts, batches, docs, frontend, jobs, ops, templates, uploads
from backend.browser import install_browser_safety, session_cookie_name
from backend.problems import register_problem_handlers
from backend.ratelimit import RateLimiter
from backend.services import Services
from backend.sse import EventHub
from backend.streams import StreamSlots
from backend.tokencache import TokenCache
from backend.uploadslots import UploadSlots
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.queueing import TaskTigerEnqueuer, create_redis, create_tiger
from taskmanager.settings import Settings
from taskmanager.storage import create_storage

log = structlog.get_logger("backend.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Room for the multipart envelope around the largest photo allowed.
_MULTIPART_SLACK = 64 * 1024
# Threads per API process that event streams may never take.
_THREADS_KEPT_FOR_REQUESTS = 16
_DEFAULT_STATIC = Path(__file__).resolve().parent.parent / "frontend" / "dist"


def _secret_key(settings: Settings) -> str:
    """Return the configured key, or one generated once and kept in data_dir."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / "secret_key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def build_services(settings: Settings, database_url: str, redis_url: str) -> Services:
    """Build the API's services from settings and the resolved service URLs."""
    engine = create_db_engine(database_url, pool_size=max(5, settings.api_threads // 4))
    connection = create_redis(redis_url)
    tiger = create_tiger(settings, connection)
    return Services(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        storage=create_storage(settings),
        redis=connection,
        tiger=tiger,
        enqueuer=TaskTigerEnqueuer(tiger, settings),
        limiter=RateLimiter(connection),
        hub=EventHub(engine, settings.sse_poll_interval_s),
        tokens=TokenCache(settings.token_cache_s),
        # Streams stop well below the thread count: health checks and ordinary
        # requests always find a thread.
        streams=StreamSlots(
            per_process=settings.max_streams_per_process
            or max(1, settings.api_threads - _THREADS_KEPT_FOR_REQUESTS),
            per_user=settings.max_streams_per_user,
        ),
        uploads=UploadSlots(
            per_process=settings.max_concurrent_uploads_per_process,
            per_user=settings.max_concurrent_uploads_per_user,
        ),
    )


def _install_request_ids(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            ms=round(elapsed_ms, 1),
        )
        return response


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> Flask:
    """Build the Flask app for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings.from_env()
    if database_url is None:
        if settings.database_url is None:
            raise RuntimeError("the API needs DATABASE_URL (clipyard up sets it for you)")
        database_url = settings.database_url.get_secret_value()
    if redis_url is None:
        if settings.redis_url is None:
            raise RuntimeError("the API needs REDIS_URL (clipyard up sets it for you)")
        redis_url = settings.redis_url.get_secret_value()
    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + _MULTIPART_SLACK,
        SESSION_COOKIE_NAME=session_cookie_name(settings.session_cookie_secure),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_max_age_s),
        CLIPYARD_STATIC_DIR=settings.static_dir or _DEFAULT_STATIC,
    )
    if settings.api_proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.api_proxy_hops, x_proto=settings.api_proxy_hops
        )
    app.extensions["clipyard"] = build_services(settings, database_url, redis_url)
    app.extensions["clipyard.settings"] = settings
    register_problem_handlers(app)
    _install_request_ids(app)
    install_browser_safety(app)
    for module in (ops, docs, accounts, uploads, templates, jobs, batches, frontend):
        app.register_blueprint(module.bp)
    return app
