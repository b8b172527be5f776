"""The OpenAPI document and its docs page, with Swagger UI's assets served from here."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from backend.openapi import openapi_document

bp = Blueprint("docs", __name__)
_ASSETS = Path(swagger_ui_path)
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clipyard API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>
"""
_INIT = 'window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#ui"});\n'


@bp.get("/api/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI document."""
    return jsonify(openapi_document())


@bp.get("/api/docs")
def page() -> Response:
    """Show the API docs (Swagger UI, served locally; no CDN)."""
    return Response(_PAGE, mimetype="text/html")


@bp.get("/api/docs/init.js")
def init() -> Response:
    """Start Swagger UI on the document (a file, so a strict CSP needs no inline script)."""
    return Response(_INIT, mimetype="text/javascript")


@bp.get("/api/docs/assets/<path:filename>")
def assets(filename: str) -> Response:
    """Serve Swagger UI's files from the swagger-ui-bundle package."""
    return send_from_directory(_ASSETS, filename, max_age=86400)
