"""What a container costs: billed seconds x (vCPU price + memory price), and estimates."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskmanager.models import Job, Run, Template
from taskmanager.settings import Settings

_CENTS_PRECISION = Decimal("0.000001")
# How many recent successful runs of a template calibrate its estimate.
_CALIBRATION_RUNS = 50


@dataclass(frozen=True)
class PriceTable:
    """Prices per hour of one vCPU and one GB of memory, and the Spot factor."""

    vcpu_hour: Decimal
    gb_hour: Decimal
    spot_factor: Decimal

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """Read the configured prices."""
        return cls(
            settings.price_per_vcpu_hour, settings.price_per_gb_hour, settings.spot_price_factor
        )


def container_cost(
    prices: PriceTable, billed_seconds: float, cpu: Decimal, memory_gb: Decimal, *, is_spot: bool
) -> Decimal:
    """Return the price of running ``cpu`` vCPUs and ``memory_gb`` GB for ``billed_seconds``."""
    hours = Decimal(str(max(0.0, billed_seconds))) / Decimal(3600)
    cost = hours * (cpu * prices.vcpu_hour + memory_gb * prices.gb_hour)
    if is_spot:
        cost *= prices.spot_factor
    return cost.quantize(_CENTS_PRECISION, rounding=ROUND_HALF_UP)


def estimate_seconds(session: Session, template: Template, settings: Settings) -> float:
    """Estimate one container's billed seconds for ``template`` from its measured runs.

    Uses the mean of the last successful runs of the same template; before any was
    measured, the configured seconds per second of video plus start-up time.
    """
    recent = (
        select(Run.billed_seconds)
        .join(Job, Job.id == Run.job_id)
        .where(
            Job.template_id == template.id,
            Run.state == "succeeded",
            Run.billed_seconds.is_not(None),
        )
        .order_by(Run.finished_at.desc())
        .limit(_CALIBRATION_RUNS)
        .subquery()
    )
    measured = session.execute(select(func.avg(recent.c.billed_seconds))).scalar()
    if measured is not None:
        return float(measured)
    return template.duration_s * settings.default_seconds_per_video_second + (
        settings.container_startup_s
    )


def estimate_job_cost(
    session: Session, job: Job, template: Template, settings: Settings
) -> Decimal:
    """Estimate one attempt of ``job``, never more than its deadline allows."""
    seconds = min(estimate_seconds(session, template, settings), float(job.max_runtime_s))
    return container_cost(
        PriceTable.from_settings(settings), seconds, job.cpu, job.memory_gb, is_spot=job.is_spot
    )


def max_job_cost(job: Job, settings: Settings) -> Decimal:
    """Return the most one attempt can cost: its whole deadline billed."""
    return container_cost(
        PriceTable.from_settings(settings),
        float(job.max_runtime_s),
        job.cpu,
        job.memory_gb,
        is_spot=job.is_spot,
    )
