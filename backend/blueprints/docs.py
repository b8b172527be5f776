"""The OpenAPI document and its docs page, with Swagger UI's files from the built web app.

Swagger UI 5 (npm ``swagger-ui-dist``) is the first to render OpenAPI 3.1; the web app's
build copies its files into ``api-docs/`` of the app's folder (``frontend/vite.config.ts``),
so the page works offline and under a CSP that allows only this server's scripts.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from werkzeug.exceptions import NotFound

from backend.openapi import openapi_document

bp = Blueprint("docs", __name__)
_VIEWER_FOLDER = "api-docs"
_VIEWER_SCRIPT = "swagger-ui-bundle.js"
_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clipyard API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/assets/{_VIEWER_SCRIPT}"></script>
<script src="/api/docs/init.js"></script></body></html>
"""
# No validator badge: it would send the document's address to validator.swagger.io.
_INIT = (
    "window.ui = SwaggerUIBundle("
    '{url: "/api/openapi.json", dom_id: "#ui", validatorUrl: null, deepLinking: true});\n'
)


def _viewer_dir() -> Path:
    """Return the folder of Swagger UI's files; 404 with the fix when it was never built."""
    static: Path = current_app.config["CLIPYARD_STATIC_DIR"]
    folder = static / _VIEWER_FOLDER
    if not (folder / _VIEWER_SCRIPT).is_file():
        raise NotFound(
            "the API docs viewer is not built: build the web app (`make frontend`), "
            "which copies Swagger UI into frontend/dist/api-docs"
        )
    return folder


@bp.get("/api/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI document."""
    return jsonify(openapi_document())


@bp.get("/api/docs")
def page() -> Response:
    """Show the API docs (Swagger UI from the built web app; no CDN)."""
    _viewer_dir()  # a page whose script is missing would stay blank: say what to run
    return Response(_PAGE, mimetype="text/html")


@bp.get("/api/docs/init.js")
def init() -> Response:
    """Start Swagger UI on the document (a file, so a strict CSP needs no inline script)."""
    return Response(_INIT, mimetype="text/javascript")


@bp.get("/api/docs/assets/<path:filename>")
def assets(filename: str) -> Response:
    """Serve a file of Swagger UI, revalidated on each visit (its names carry no version)."""
    return send_from_directory(_viewer_dir(), filename, max_age=0)
