"""Photo uploads (multipart), validated and normalised before they are stored."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, request

from backend.auth import login_required, require_caller
from backend.bodies import answer
from backend.problems import validation_problem_for
from backend.schemas import UploadList, UploadOut
from backend.services import services
from taskmanager.uploads import (
    UploadNotFound,
    find_uploads_by_sha256,
    get_upload,
    store_upload,
)

bp = Blueprint("uploads", __name__, url_prefix="/api/v1")


@bp.post("/uploads")
@login_required
def create() -> Response:
    """Store a photo sent as the multipart field ``file``."""
    caller = require_caller()
    if request.mimetype != "multipart/form-data":
        return validation_problem_for("file", "send the photo as multipart/form-data field 'file'")
    photo = request.files.get("file")
    if photo is None:
        return validation_problem_for("file", "the multipart field 'file' is missing")
    settings = services().settings
    # Taken once the body has arrived: the slot bounds decoding, not a slow client.
    with services().uploads.holding(caller.id):  # 429 beyond the caps
        upload = store_upload(
            services().sessions,
            services().storage,
            caller.id,
            photo.stream,
            filename=photo.filename,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_upload_pixels,
        )
    return answer(UploadOut.model_validate(upload), 201)


@bp.get("/uploads")
@login_required
def find() -> Response:
    """Find the caller's uploads of a file by its SHA-256 (``?sha256=``), to skip re-sending."""
    digest = request.args.get("sha256", "")
    if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        return validation_problem_for("sha256", "must be 64 hexadecimal characters")
    found = find_uploads_by_sha256(services().sessions, require_caller().id, digest)
    return answer(UploadList(items=[UploadOut.model_validate(u) for u in found]))


@bp.get("/uploads/<uuid:upload_id>")
@login_required
def show(upload_id: uuid.UUID) -> Response:
    """Describe one of the caller's uploads."""
    upload = get_upload(services().sessions, upload_id, require_caller().owner_filter())
    if upload is None:
        raise UploadNotFound(f"no upload {upload_id}")
    return answer(UploadOut.model_validate(upload))
