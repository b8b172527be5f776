"""Answers about jobs: a job, a page of jobs, and a job's events.

``JobOut`` and ``EventOut`` read the domain rows directly (``JobOut.model_validate(job)``).
What a job's answer derives rather than copies (its crop from ``params``, the URLs of
its result and poster from their blob keys) is read by a validation alias and turned
into the answer's value by a field validator, so the answer never carries a blob key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class JobOut(BaseModel):
    """A job and where it is."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    state: str
    template_id: uuid.UUID
    upload_id: uuid.UUID
    batch_id: uuid.UUID | None
    row_id: str | None
    # A job keeps its crop in params, and only when one was asked for; an alias path
    # would need a default, and the schema would stop calling the field required.
    crop: list[int] | None = Field(validation_alias="params")
    progress: float
    attempt: int
    max_attempts: int
    cancel_requested: bool
    error_code: str | None
    error_message: str | None
    estimated_cost_usd: Decimal | None
    actual_cost_usd: Decimal
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Read from the job's blob keys; answered as the URLs that serve the blobs. Plain
    # fields rather than computed ones, which the schema would mark readOnly.
    result_url: str | None = Field(validation_alias="output_key")
    poster_url: str | None = Field(validation_alias="poster_key")

    @field_validator("crop", mode="before")
    @classmethod
    def _crop_of_params(cls, params: dict[str, Any]) -> Any:
        """Take the crop out of the job's params."""
        return params.get("crop")

    @field_validator("result_url")
    @classmethod
    def _result_url(cls, output_key: str | None, info: ValidationInfo) -> str | None:
        """Point at the result route, once the job has a result."""
        return f"/api/v1/jobs/{info.data['id']}/result" if output_key else None

    @field_validator("poster_url")
    @classmethod
    def _poster_url(cls, poster_key: str | None, info: ValidationInfo) -> str | None:
        """Point at the poster route, once the job has a poster."""
        return f"/api/v1/jobs/{info.data['id']}/poster" if poster_key else None


class JobPage(BaseModel):
    """One page of jobs; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """One entry of a job's history; ``id`` is the SSE event id."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    from_state: str | None
    to_state: str | None
    data: dict[str, Any]
    created_at: datetime


class EventList(BaseModel):
    """Events after the requested id, and whether the job is finished."""

    items: list[EventOut]
    is_terminal: bool
