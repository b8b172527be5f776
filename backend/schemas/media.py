"""Answers about the two inputs of a job: the uploaded photo and the template video.

Both read the domain rows directly (``UploadOut.model_validate(upload)``). A template's
URLs are derived from its name and blob keys, so the answer never carries a key.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class UploadOut(BaseModel):
    """A stored photo."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    content_type: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    created_at: datetime


class UploadList(BaseModel):
    """The caller's uploads matching the query."""

    items: list[UploadOut]


class TemplateOut(BaseModel):
    """A template video people can pick."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    title: str
    duration_s: float
    fps: float
    width: int
    height: int
    placement_aspect: float
    # Read from the template's poster key and name; answered as the URLs that serve them.
    # Plain fields rather than computed ones, which the schema would mark readOnly.
    poster_url: str | None = Field(validation_alias="poster_key")
    preview_url: str = Field(validation_alias="name")

    @field_validator("poster_url")
    @classmethod
    def _poster_url(cls, poster_key: str | None, info: ValidationInfo) -> str | None:
        """Point at the poster route, if the template has a poster."""
        return f"/api/v1/templates/{info.data['name']}/poster" if poster_key else None

    @field_validator("preview_url")
    @classmethod
    def _preview_url(cls, name: str) -> str:
        """Point at the route that serves the template's video."""
        return f"/api/v1/templates/{name}/video"


class TemplateList(BaseModel):
    """Every active template."""

    items: list[TemplateOut]
