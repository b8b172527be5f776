"""What a container costs: billed seconds x (vCPU price + memory price), and estimates."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskmanager.models import Batch, Job, Run, Template
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


@dataclass(frozen=True)
class RuntimeModel:
    """How long a template's containers run: vCPU-seconds per second of output video.

    Calibrated from the template's recent successful runs (the median of billed seconds
    x vCPUs / video seconds, robust to the odd slow run), else the configured default.
    """

    vcpu_seconds_per_video_second: float
    startup_s: float
    is_calibrated: bool
    sample_runs: int

    def seconds(self, template: Template, cpu: Decimal) -> float:
        """Return the billed seconds expected for one container of ``template``."""
        per_cpu = self.vcpu_seconds_per_video_second / float(max(cpu, Decimal("0.01")))
        return self.startup_s + per_cpu * template.duration_s


def runtime_model(session: Session, template: Template, settings: Settings) -> RuntimeModel:
    """Return ``template``'s runtime model, calibrated from its measured runs if any.

    A calibrated model folds start-up into the measured rate (billed time includes it);
    the default one is ``default_seconds_per_video_second`` per vCPU plus start-up.
    """
    rates = (
        select((Run.billed_seconds * Run.cpu / template.duration_s).label("rate"))
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
    median, count = session.execute(
        select(func.percentile_cont(0.5).within_group(rates.c.rate), func.count(rates.c.rate))
    ).one()
    if median is not None and template.duration_s > 0:
        return RuntimeModel(float(median), 0.0, is_calibrated=True, sample_runs=int(count))
    return RuntimeModel(
        settings.default_seconds_per_video_second,
        settings.container_startup_s,
        is_calibrated=False,
        sample_runs=0,
    )


class ModelCache:
    """Runtime models per template, each reused for ``ttl_s`` seconds.

    Admission estimates every attempt under the global admission lock; recalibrating
    from the database each time would put a scan of the template's runs inside that
    lock. A model a few seconds old is as good: it moves slowly by construction.
    """

    def __init__(self, ttl_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        self._models: dict[uuid.UUID, tuple[float, RuntimeModel]] = {}

    def get(self, session: Session, template: Template, settings: Settings) -> RuntimeModel:
        """Return the template's model, recalibrating it when the cached one is too old."""
        now = time.monotonic()
        cached = self._models.get(template.id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        model = runtime_model(session, template, settings)
        self._models[template.id] = (now, model)
        return model


# One per process: what admission in this task manager has calibrated lately.
ADMISSION_MODELS = ModelCache()


def estimate_job_cost(
    session: Session,
    job: Job,
    template: Template,
    settings: Settings,
    *,
    is_spot: bool | None = None,
) -> Decimal:
    """Estimate one attempt of ``job``, never more than its deadline allows.

    ``is_spot`` is the attempt's priority where it differs from the job's (None: the job's).
    """
    model = ADMISSION_MODELS.get(session, template, settings)
    seconds = min(model.seconds(template, job.cpu), float(job.max_runtime_s))
    return container_cost(
        PriceTable.from_settings(settings),
        seconds,
        job.cpu,
        job.memory_gb,
        is_spot=job.is_spot if is_spot is None else is_spot,
    )


# Every container stops on its own within this long after its deadline (the image's
# watchdog exits at CLIPYARD_DEADLINE_AT; a stand-in ignoring SIGTERM is killed 1 s
# later; clocks agree within a second), whether or not a manager is watching it.
DEADLINE_SLACK_S = 5.0


def max_billed_seconds(max_runtime_s: float) -> float:
    """Return the longest an attempt can be billed: its window is the deadline's window.

    The billed window runs from the create request (``launched_at``) until the
    container stops; the deadline is measured on the same window and the container
    enforces it itself, so a missing manager cannot stretch it.
    """
    return float(max_runtime_s) + DEADLINE_SLACK_S


def max_attempt_cost(job: Job, settings: Settings) -> Decimal:
    """Return the most one attempt of ``job`` can cost: its whole window, at Regular price."""
    return container_cost(
        PriceTable.from_settings(settings),
        max_billed_seconds(job.max_runtime_s),
        job.cpu,
        job.memory_gb,
        is_spot=False,
    )


def batch_spend_bound(session: Session, batch: Batch, settings: Settings) -> Decimal:
    """Return the stated bound on a batch's spend: what the README's guarantee promises.

    ``spent <= budget + max_concurrent x (the costliest attempt of any of its jobs)``:
    admission keeps ``spent + reserved + estimate <= budget`` for every attempt it
    starts, so only attempts already running can overrun their reservation, at most
    ``max_concurrent`` of them at once, each by less than its whole billed window.
    """
    jobs = session.scalars(select(Job).where(Job.batch_id == batch.id))
    worst = max((max_attempt_cost(job, settings) for job in jobs), default=Decimal(0))
    return batch.budget_usd + batch.max_concurrent * worst


@dataclass(frozen=True)
class PlanGroup:
    """Rows of a plan that share a template and resources."""

    template_name: str
    count: int
    cpu: Decimal
    memory_gb: Decimal
    max_runtime_s: int


@dataclass(frozen=True)
class GroupEstimate:
    """What one group of a plan is expected to cost, and from which model."""

    group: PlanGroup
    model: RuntimeModel
    seconds_per_job: float
    cost_usd: Decimal
    spot_cost_usd: Decimal
    # Every job running to its deadline: the most the group could cost.
    max_cost_usd: Decimal


@dataclass(frozen=True)
class PlanEstimate:
    """A whole plan: container time, money (Regular and Spot) and wall time."""

    groups: list[GroupEstimate]
    prices: PriceTable
    max_concurrent: int

    @property
    def jobs(self) -> int:
        """Return how many jobs the plan has."""
        return sum(g.group.count for g in self.groups)

    @property
    def container_seconds(self) -> float:
        """Return the billed container time of every job together."""
        return sum(g.seconds_per_job * g.group.count for g in self.groups)

    @property
    def cost_usd(self) -> Decimal:
        """Return the expected cost at Regular priority."""
        return sum((g.cost_usd for g in self.groups), Decimal(0))

    @property
    def spot_cost_usd(self) -> Decimal:
        """Return the expected cost on Spot capacity (evictions not counted)."""
        return sum((g.spot_cost_usd for g in self.groups), Decimal(0))

    @property
    def max_cost_usd(self) -> Decimal:
        """Return the most the plan could cost: every job billed to its deadline, once."""
        return sum((g.max_cost_usd for g in self.groups), Decimal(0))

    @property
    def wall_seconds(self) -> float:
        """Return the expected wall time at the concurrency cap (no retries, no queueing)."""
        if not self.groups:
            return 0.0
        longest = max(g.seconds_per_job for g in self.groups)
        return max(longest, self.container_seconds / max(1, min(self.max_concurrent, self.jobs)))

    @property
    def is_calibrated(self) -> bool:
        """Tell whether every group's model was calibrated from measured runs."""
        return all(g.model.is_calibrated for g in self.groups)


def estimate_plan(
    session: Session, settings: Settings, groups: list[PlanGroup], max_concurrent: int
) -> PlanEstimate:
    """Estimate a plan group by group; an unknown template raises ``LookupError`` naming it."""
    prices = PriceTable.from_settings(settings)
    names = {g.template_name for g in groups}
    templates = {
        t.name: t
        for t in session.scalars(
            select(Template).where(Template.name.in_(names), Template.is_active)
        )
    }
    models: dict[str, RuntimeModel] = {}
    estimates = []
    for group in groups:
        template = templates.get(group.template_name)
        if template is None:
            raise LookupError(group.template_name)
        if template.name not in models:
            models[template.name] = runtime_model(session, template, settings)
        model = models[template.name]
        seconds = min(model.seconds(template, group.cpu), float(group.max_runtime_s))
        per_job = {
            is_spot: container_cost(prices, seconds, group.cpu, group.memory_gb, is_spot=is_spot)
            for is_spot in (False, True)
        }
        deadline = container_cost(
            prices, float(group.max_runtime_s), group.cpu, group.memory_gb, is_spot=False
        )
        estimates.append(
            GroupEstimate(
                group,
                model,
                seconds,
                per_job[False] * group.count,
                per_job[True] * group.count,
                deadline * group.count,
            )
        )
    return PlanEstimate(estimates, prices, max_concurrent)
