"""Templates: load the builder's folder into storage and the database, and list them.

Loading is idempotent: a template is matched by name, its files are uploaded again
only when their size changed or they are missing, and its row is updated in place.

The folder's metadata files (``clipyard.template`` version 1, whose JSON schema ships
with the job image in ``jobimages/schemas/template-v1.json``) are read here with
pydantic, which the API has anyway: the domain never imports the container's code or
its dependencies, and a test holds this model to the schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.errors import DomainError
from taskmanager.models import Template
from taskmanager.storage import Storage
from taskmanager.storage.keys import template_key

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webm": "video/webm",
}


class TemplateError(DomainError):
    """Base of the template wing's errors."""


class TemplateNotFound(TemplateError):
    """No active template of that name."""


class InvalidTemplateFolder(TemplateError):
    """A template folder's index or metadata cannot be read; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TemplateFiles(_Strict):
    """A template's files, by name relative to its metadata file."""

    video: str
    track: str
    poster: str
    matte: str | None = None


class TemplateManifest(_Strict):
    """A template's metadata file (format ``clipyard.template``, version 1)."""

    format: Literal["clipyard.template"]
    version: Literal[1]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    title: str = Field(min_length=1, max_length=200)
    width: int = Field(ge=16)
    height: int = Field(ge=16)
    fps: str = Field(pattern=r"^[1-9][0-9]*/[1-9][0-9]*$")
    frame_count: int = Field(ge=1)
    duration_s: float = Field(gt=0)
    aspect: float = Field(gt=0)
    has_audio: bool
    files: TemplateFiles

    @property
    def fps_value(self) -> float:
        """Return the frame rate as a number."""
        return float(Fraction(self.fps))


@dataclass(frozen=True)
class TemplateInfo:
    """A template's metadata with its files resolved against its folder."""

    manifest: TemplateManifest
    folder: Path

    @property
    def name(self) -> str:
        """Return the template's name."""
        return self.manifest.name

    def path(self, file_name: str | None) -> Path | None:
        """Return a file of the template by its name in the metadata, or None."""
        return None if file_name is None else self.folder / file_name


def read_template(path: Path) -> TemplateInfo:
    """Read and check one template's metadata file."""
    try:
        manifest = TemplateManifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise InvalidTemplateFolder(f"template metadata {path.name} is invalid: {exc}") from exc
    return TemplateInfo(manifest, path.parent)


def read_templates(folder: Path) -> list[TemplateInfo]:
    """Read every template listed in a folder's index.json, in the index's order."""
    index_path = folder / "index.json"
    try:
        names = json.loads(index_path.read_text("utf-8"))["templates"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidTemplateFolder(f"{index_path} is not a template index: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InvalidTemplateFolder(f"{index_path}: 'templates' must be a list of names")
    return [read_template(folder / f"{name}.json") for name in names]


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
    manifest = info.manifest
    files = manifest.files
    keys: dict[str, str | None] = {}
    uploaded = 0
    for role, file_name in (
        ("video", files.video),
        ("track", files.track),
        ("poster", files.poster),
        ("matte", files.matte),
    ):
        path = info.path(file_name)
        if path is None:
            keys[role] = None
            continue
        keys[role] = template_key(info.name, path.name)
        uploaded += _put(storage, template_key(info.name, path.name), path)
    values = {
        "title": manifest.title,
        "duration_s": manifest.duration_s,
        "fps": manifest.fps_value,
        "width": manifest.width,
        "height": manifest.height,
        "frame_count": manifest.frame_count,
        "placement_aspect": manifest.aspect,
        "has_audio": manifest.has_audio,
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
