"""Answers about batches: a batch, its plan (an estimate), its rows and its report.

``BatchOut`` reads the batch row directly; its jobs counted by state are not on the row,
so ``BatchOut.from_view`` adds the counts a ``BatchView`` carries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from taskmanager.batches.service import BatchView


class BatchOut(BaseModel):
    """A batch, its money and its jobs by state."""

    # jobs_by_state has a default only so the row alone validates; the answer always
    # carries it, so the schema keeps it required.
    model_config = ConfigDict(
        from_attributes=True, json_schema_serialization_defaults_required=True
    )

    id: uuid.UUID
    name: str
    state: str
    paused_reason: str | None
    budget_usd: Decimal
    reserved_usd: Decimal
    spent_usd: Decimal
    max_concurrent: int
    cpu: Decimal
    memory_gb: Decimal
    max_runtime_s: int
    is_spot: bool
    created_at: datetime
    jobs_by_state: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def from_view(cls, view: BatchView) -> BatchOut:
        """Describe the view's batch with its jobs counted by state."""
        found = cls.model_validate(view.batch)
        return found.model_copy(update={"jobs_by_state": view.jobs_by_state})


class BatchList(BaseModel):
    """Batches, newest first."""

    items: list[BatchOut]


class PriceTableOut(BaseModel):
    """The prices an estimate used."""

    vcpu_hour_usd: Decimal
    gb_hour_usd: Decimal
    spot_factor: Decimal


class PlanGroupOut(BaseModel):
    """One group's estimate and the runtime model behind it."""

    template: str
    count: int
    cpu: Decimal
    memory_gb: Decimal
    max_runtime_s: int
    seconds_per_job: float
    model: Literal["calibrated", "default"]
    sample_runs: int
    vcpu_seconds_per_video_second: float
    cost_usd: Decimal
    spot_cost_usd: Decimal
    max_cost_usd: Decimal


class PlanOut(BaseModel):
    """A batch's estimate: container time, money both ways, wall time; nothing is created."""

    jobs: int
    container_seconds: float
    cost_usd: Decimal
    spot_cost_usd: Decimal
    max_cost_usd: Decimal
    wall_seconds: float
    max_concurrent: int
    model: Literal["calibrated", "default", "mixed"]
    prices: PriceTableOut
    groups: list[PlanGroupOut]


class RowResultOut(BaseModel):
    """The job a manifest row maps to."""

    row_id: str
    job_id: uuid.UUID
    state: str
    is_created: bool


class RowResultList(BaseModel):
    """The jobs of the rows sent, in their order."""

    items: list[RowResultOut]


class ReportRowOut(BaseModel):
    """One job of a batch report."""

    row_id: str | None
    job_id: uuid.UUID
    state: str
    attempts: int
    runtime_s: float
    cost_usd: Decimal
    output_url: str | None
    error_code: str | None
    error_message: str | None


class ReportPage(BaseModel):
    """One page of a batch report; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[ReportRowOut]
    next_cursor: str | None


class RetryOut(BaseModel):
    """How many jobs were queued again, and the batch after."""

    retried: int
    batch: BatchOut
