"""The shape of every error answer: an RFC 9457 problem (built in ``backend.problems``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Problem(BaseModel):
    """An RFC 9457 problem: every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    field: str | None = None
