"""Answers for operators and probes: liveness, readiness and the operations summary."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class BatchSpendOut(BaseModel):
    """One open batch's money."""

    id: str
    name: str
    state: str
    budget_usd: Decimal
    reserved_usd: Decimal
    spent_usd: Decimal


class SummaryOut(BaseModel):
    """A snapshot of queues, jobs, containers, spend and failures."""

    queues: dict[str, dict[str, int]]
    jobs_by_state: dict[str, int]
    running_containers: int
    running_cpu: Decimal
    spend_today_usd: Decimal
    spend_total_usd: Decimal
    container_seconds_total: float
    batches: list[BatchSpendOut]
    failures_by_kind_24h: dict[str, int]
    supervision_lag_s: float
    oldest_queued_s: float


class Status(BaseModel):
    """A liveness or readiness answer."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)
