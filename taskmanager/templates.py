"""Templates: load the builder's folder into storage and the database, and list them.

Loading is idempotent: a template is matched by name, its files are uploaded again
only when their size changed or they are missing, and its row is updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from jobimages.template import TemplateInfo, read_templates
from taskmanager.models import Template
from taskmanager.storage import Storage
from taskmanager.storage.keys import template_key

_CONTENT_TYPES = {".mp4": "video/mp4", ".json": "application/json", ".png": "image/png",
                  ".jpg": "image/jpeg", ".webm": "video/webm"}  # fmt: skip


class TemplateNotFound(Exception):
    """No active template of that name."""


@dataclass(frozen=True)
class LoadedTemplate:
    """What loading did to one template."""

    name: str
    created: bool
    files_uploaded: int


def _put(storage: Storage, key: str, path: Path) -> int:
    if storage.exists(key) and storage.size(key) == path.stat().st_size:
        return 0
    with path.open("rb") as source:
        storage.upload(key, source, content_type=_CONTENT_TYPES.get(path.suffix.lower()))
    return 1


def load_template(
    sessions: sessionmaker[Session], storage: Storage, info: TemplateInfo
) -> LoadedTemplate:
    """Upload one template's files and create or update its row."""
    keys: dict[str, str | None] = {}
    uploaded = 0
    for role, path in (("video", info.video), ("track", info.track), ("poster", info.poster),
                       ("matte", info.matte)):  # fmt: skip
        if path is None:
            keys[role] = None
            continue
        keys[role] = template_key(info.name, path.name)
        uploaded += _put(storage, template_key(info.name, path.name), path)
    values = {
        "title": info.title,
        "duration_s": info.duration_s,
        "fps": float(info.fps),
        "width": info.width,
        "height": info.height,
        "frame_count": info.frame_count,
        "placement_aspect": info.aspect,
        "has_audio": info.has_audio,
        "video_key": keys["video"],
        "track_key": keys["track"],
        "matte_key": keys["matte"],
        "poster_key": keys["poster"],
        "is_active": True,
    }
    with sessions.begin() as session:
        row = session.scalars(select(Template).where(Template.name == info.name)).first()
        created = row is None
        if row is None:
            row = Template(name=info.name)
            session.add(row)
        for attribute, value in values.items():
            setattr(row, attribute, value)
    return LoadedTemplate(info.name, created, uploaded)


def load_templates(
    sessions: sessionmaker[Session], storage: Storage, folder: Path
) -> list[LoadedTemplate]:
    """Load every template listed in ``folder``'s index.json."""
    return [load_template(sessions, storage, info) for info in read_templates(folder)]


def list_templates(sessions: sessionmaker[Session]) -> list[Template]:
    """List the active templates by name."""
    with sessions() as session:
        return list(
            session.scalars(select(Template).where(Template.is_active).order_by(Template.name))
        )


def get_template(sessions: sessionmaker[Session], name: str) -> Template:
    """Return the active template called ``name``; raise ``TemplateNotFound`` if none."""
    with sessions() as session:
        row = session.scalars(
            select(Template).where(Template.name == name, Template.is_active)
        ).first()
    if row is None:
        raise TemplateNotFound(name)
    return row
