"""What keeps a browser safe on shared hosting: headers, the cookie's name, one session.

On ``*.azurecontainerapps.io`` sibling apps are the same *site*: SameSite cookies do not
keep them out, so the app also says who may frame it (nobody), where scripts may come
from (itself), and asks for HTTPS; over HTTPS its session cookie takes the ``__Host-``
prefix, which a sibling cannot set or shadow. A request carrying the session cookie
twice (one planted for a parent domain) is refused rather than guessed at.
"""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest

SESSION_COOKIE = "clipyard_session"
SECURE_SESSION_COOKIE = "__Host-clipyard_session"

# The web app and the API docs: their own scripts only, styles inline (Vue and Swagger
# UI set style attributes), media and images also from blob storage (result redirects).
_PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob: https:",
        "media-src 'self' blob: https:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Anything else (JSON, problems, streams, files) is never a document to render.
_DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"
_HSTS = "max-age=31536000"


def session_cookie_name(is_secure: bool) -> str:
    """Return the session cookie's name: ``__Host-`` prefixed when it is HTTPS-only."""
    return SECURE_SESSION_COOKIE if is_secure else SESSION_COOKIE


def install_browser_safety(app: Flask) -> None:
    """Refuse doubled session cookies and add the safety headers to every answer."""
    cookie_name = app.config["SESSION_COOKIE_NAME"]

    @app.before_request
    def _one_session_only() -> None:
        header = request.headers.get("Cookie", "")
        names = [part.split("=", 1)[0].strip() for part in header.split(";")]
        if names.count(cookie_name) > 1:
            raise BadRequest(
                f"the request carries the {cookie_name} cookie twice; clear this site's "
                "cookies and sign in again"
            )

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        is_page = response.mimetype == "text/html"
        headers.setdefault("Content-Security-Policy", _PAGE_POLICY if is_page else _DATA_POLICY)
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", _HSTS)
        return response
