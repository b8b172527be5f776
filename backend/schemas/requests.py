"""Request bodies: what the API accepts, each field bounded and named in a 422 when wrong.

Bodies refuse unknown fields (``extra="forbid"``): a misspelt field is a mistake worth
reporting, not one to ignore. A job's resources take their ranges from
``taskmanager.limits``, the same numbers the job service and batch manifests check.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskmanager import limits


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Body(BaseModel):
    """Base of request bodies."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
        if _has_nul(data):
            raise ValueError("text may not contain NUL characters")
        return data


_EMAIL_PATTERN = r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$"

_Money = Field(ge=0, le=100_000, decimal_places=6)
_Cpu = Field(default=None, ge=limits.CPU.low, le=limits.CPU.high, decimal_places=2)
_Memory = Field(default=None, ge=limits.MEMORY_GB.low, le=limits.MEMORY_GB.high, decimal_places=2)
_Runtime = Field(default=None, ge=limits.MAX_RUNTIME_S.low, le=limits.MAX_RUNTIME_S.high)
_Attempts = Field(default=None, ge=limits.MAX_ATTEMPTS.low, le=limits.MAX_ATTEMPTS.high)
_Concurrent = Field(default=10, ge=limits.MAX_CONCURRENT.low, le=limits.MAX_CONCURRENT.high)


class Credentials(Body):
    """Email and password, for sign-up and sign-in."""

    email: str = Field(min_length=3, max_length=320, pattern=_EMAIL_PATTERN)
    password: str = Field(min_length=8, max_length=1024)


class TokenCreate(Body):
    """A new API token's name and lifetime."""

    name: str = Field(min_length=1, max_length=100)
    ttl_days: int | None = Field(default=None, ge=1, le=3650)


class Crop(Body):
    """The rectangle of the photo to use, in pixels of the stored (upright) photo."""

    x: int = Field(ge=0, le=1_000_000)
    y: int = Field(ge=0, le=1_000_000)
    width: int = Field(gt=0, le=1_000_000)
    height: int = Field(gt=0, le=1_000_000)


class JobCreate(Body):
    """A request for one video."""

    template: str = Field(min_length=1, max_length=100)
    upload_id: uuid.UUID
    crop: Crop | None = None
    batch_id: uuid.UUID | None = None
    row_id: str | None = Field(default=None, min_length=1, max_length=200)
    max_attempts: int | None = _Attempts
    max_runtime_s: int | None = _Runtime
    # Test and benchmark stand-in image; refused unless the server allows fake jobs.
    fake: dict[str, Any] | None = None


class BatchCreate(Body):
    """An operator's new batch."""

    name: str = Field(min_length=1, max_length=200)
    budget_usd: Decimal = Field(ge=0, le=100_000, decimal_places=6)
    max_concurrent: int = _Concurrent
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime
    is_spot: bool = False


class BudgetSet(Body):
    """A batch's new budget."""

    budget_usd: Decimal = _Money


class PlanGroupIn(Body):
    """Manifest rows that share a template and resources (unset: the plan's own)."""

    template: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=1, le=1_000_000)
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime


class PlanIn(Body):
    """What a batch would run: its rows grouped, its resources and concurrency."""

    groups: list[PlanGroupIn] = Field(min_length=1, max_length=1000)
    max_concurrent: int = _Concurrent
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime


class BatchRowIn(Body):
    """One manifest row: a job of the batch, idempotent by ``row_id``."""

    row_id: str = Field(min_length=1, max_length=200)
    template: str = Field(min_length=1, max_length=100)
    upload_id: uuid.UUID
    crop: Crop | None = None
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime
    # Test and benchmark stand-in image; refused unless the server allows fake jobs.
    fake: dict[str, Any] | None = None


class BatchRowsIn(Body):
    """Rows to create as jobs of the batch (at most 500 per request)."""

    rows: list[BatchRowIn] = Field(min_length=1, max_length=500)
