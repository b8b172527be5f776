"""Templates people can pick, with their posters."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response

from backend.auth import login_required
from backend.blobs import send_blob
from backend.bodies import answer
from backend.schemas import TemplateList, TemplateOut
from backend.services import services
from taskmanager.models import Template
from taskmanager.templates import TemplateNotFound, get_template, list_templates

bp = Blueprint("templates", __name__, url_prefix="/api/v1")


@bp.get("/templates")
@login_required
def index() -> Response:
    """List the active templates."""
    found = list_templates(services().sessions)
    return answer(TemplateList(items=[TemplateOut.model_validate(t) for t in found]))


def _template(name: str) -> Template:
    if not (len(name) <= 100 and name.isprintable()):
        raise TemplateNotFound(f"no template {name!r}")
    return get_template(services().sessions, name)


@bp.get("/templates/<name>/poster")
@login_required
def poster(name: str) -> Response:
    """Send a template's poster image."""
    template = _template(name)
    if template.poster_key is None:
        raise TemplateNotFound(f"template {name} has no poster")
    # The builder writes JPEG posters; a loaded template may bring a PNG.
    mimetype = mimetypes.guess_type(template.poster_key)[0] or "image/jpeg"
    return send_blob(template.poster_key, mimetype=mimetype)


@bp.get("/templates/<name>/video")
@login_required
def video(name: str) -> Response:
    """Send a template's video, for the gallery's looping preview (Range supported)."""
    return send_blob(_template(name).video_key, mimetype="video/mp4")
