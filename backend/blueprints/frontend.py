"""The built web app at ``/``, with an SPA fallback for paths the app routes itself."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, send_from_directory

bp = Blueprint("frontend", __name__)
# Paths that belong to the API (and must 404 as problems, never fall back to the app).
_API_PREFIXES = ("api/", "healthz", "readyz", "metrics")


def _static_dir() -> Path | None:
    folder: Path | None = current_app.config.get("CLIPYARD_STATIC_DIR")
    return folder if folder is not None and (folder / "index.html").is_file() else None


@bp.get("/", defaults={"path": ""})
@bp.get("/<path:path>")
def serve(path: str) -> Response:
    """Serve a file of the built app, or its index.html for the app's own routes."""
    folder = _static_dir()
    if folder is None or path.startswith(_API_PREFIXES):
        abort(404)
    if path and (folder / path).is_file():
        # Vite fingerprints everything under assets/: cache it for long.
        max_age = 31536000 if path.startswith("assets/") else 0
        return send_from_directory(folder, path, max_age=max_age)
    if "." in path.rsplit("/", 1)[-1]:
        abort(404)  # a missing file, not an app route
    response = send_from_directory(folder, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response
