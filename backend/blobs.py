"""Hand a stored blob to a client: a short-lived read URL (Azure) or a local stream.

The local stream honours ``Range`` (werkzeug answers 206 and 416), so video players
can seek.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from flask import Response, redirect, send_file

from backend.services import services
from taskmanager.storage.base import BlobNotFound
from taskmanager.storage.local import LocalStorage


def send_blob(key: str, *, mimetype: str, download_name: str | None = None) -> Response:
    """Answer with the blob under ``key`` (404 problem if it is gone)."""
    storage = services().storage
    if isinstance(storage, LocalStorage):
        path = storage.path_of(key)
        if not path.is_file():
            raise BlobNotFound(key)
        response = send_file(
            path,
            mimetype=mimetype,
            conditional=True,
            download_name=download_name,
            as_attachment=False,
            max_age=300,
        )
        response.headers["Cache-Control"] = "private, max-age=300"
        return response
    ttl = timedelta(seconds=services().settings.result_url_ttl_s)
    url = storage.read_url(key, ttl, download_name=download_name)
    moved = cast(Response, redirect(url, code=302))
    # The URL is a credential for its few minutes: no cache may keep it.
    moved.headers["Cache-Control"] = "no-store"
    return moved
