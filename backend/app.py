"""The application factory: ``create_app(settings)`` builds the API; nothing at import time."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from sqlalchemy import text

from backend.problems import register_problem_handlers
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.settings import Settings


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> Flask:
    """Build the Flask app for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings.from_env()
    if database_url is None:
        if settings.database_url is None:
            raise RuntimeError("the API needs DATABASE_URL (clipyard up sets it for you)")
        database_url = settings.database_url.get_secret_value()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    engine = create_db_engine(database_url)
    app.extensions["clipyard.sessions"] = create_session_factory(engine)
    app.extensions["clipyard.settings"] = settings
    register_problem_handlers(app)

    @app.get("/api/v1/health")
    def health() -> Response:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return jsonify(status="ok")

    return app
