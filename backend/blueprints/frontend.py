"""The built web app at ``/``, with an SPA fallback for paths the app routes itself."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, send_from_directory
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import PathConverter
from werkzeug.security import safe_join

bp = Blueprint("frontend", __name__)


class AppPathConverter(PathConverter):
    """A path the web app may own: never one of the API's, nor one climbing out.

    Excluding API paths in the URL map itself (not in the view) keeps the app's route
    out of their method lists too: ``OPTIONS /api/v1/auth/login`` must not say GET.
    """

    regex = r"(?!api(?:/|$)|healthz$|readyz$|metrics$)[^/].*?"


@bp.record_once
def _register_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters["app_path"] = AppPathConverter


def _static_dir() -> Path | None:
    folder: Path | None = current_app.config.get("CLIPYARD_STATIC_DIR")
    return folder if folder is not None and (folder / "index.html").is_file() else None


@bp.get("/", defaults={"path": ""})
@bp.get("/<app_path:path>")
def serve(path: str) -> Response:
    """Serve a file of the built app, or its index.html for the app's own routes.

    A path that would leave the app's folder is a 404 whether or not such a file
    exists: the answer must not tell the server's files apart.
    """
    folder = _static_dir()
    if folder is None or (path and safe_join(str(folder), path) is None):
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
