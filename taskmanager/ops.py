"""Operations: what the system is doing right now, for the summary page and /metrics.

Every figure comes from Postgres (the source of truth) except queue depths, which only
Redis knows. Times are the database's (``now()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.models import Batch, Job, Run
from taskmanager.settings import Settings
from taskmanager.states import BatchState, JobState, RunState

_LIVE_RUNS = (RunState.PENDING.value, RunState.LAUNCHING.value, RunState.RUNNING.value)


class QueueSizes(Protocol):
    """Reports a queue's entries by state (TaskTiger's ``get_queue_sizes``)."""

    def get_queue_sizes(self, queue: str) -> dict[str, int]:
        """Return the queue's entry counts by state (queued, scheduled, active)."""


@dataclass(frozen=True)
class BatchSpend:
    """One open batch's money."""

    id: str
    name: str
    state: str
    budget_usd: Decimal
    reserved_usd: Decimal
    spent_usd: Decimal


@dataclass(frozen=True)
class Summary:
    """A snapshot of the whole system."""

    queues: dict[str, dict[str, int]]
    jobs_by_state: dict[str, int]
    running_containers: int
    running_cpu: Decimal
    spend_today_usd: Decimal
    spend_total_usd: Decimal
    container_seconds_total: float
    batches: list[BatchSpend]
    failures_by_kind_24h: dict[str, int]
    # Oldest heartbeat among live runs, in seconds (how far supervision lags behind).
    supervision_lag_s: float
    # How long the oldest queued job has waited, in seconds.
    oldest_queued_s: float


def queue_depths(queue_sizes: QueueSizes | None, settings: Settings) -> dict[str, dict[str, int]]:
    """Return each queue's entries by state; empty when Redis cannot be asked."""
    if queue_sizes is None:
        return {}
    names = (settings.interactive_queue, settings.batch_queue, settings.maintenance_queue)
    depths: dict[str, dict[str, int]] = {}
    for name in names:
        sizes = queue_sizes.get_queue_sizes(name)
        depths[name] = {state: int(count) for state, count in sizes.items()}
    return depths


def _seconds(session: Session, sql: str) -> float:
    value = session.scalar(text(sql))
    return float(value) if value is not None else 0.0


def summarize(
    sessions: sessionmaker[Session], settings: Settings, queue_sizes: QueueSizes | None
) -> Summary:
    """Take a snapshot of queues, jobs, containers, spend and failures."""
    with sessions() as session:
        jobs_by_state = {s.value: 0 for s in JobState}
        for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state)):
            jobs_by_state[state] = count
        running, cpu = session.execute(
            select(func.count(), func.coalesce(func.sum(Run.cpu), 0)).where(
                Run.state.in_(_LIVE_RUNS)
            )
        ).one()
        today = session.scalar(
            select(func.coalesce(func.sum(Run.cost_usd), 0)).where(
                Run.finished_at >= func.date_trunc("day", func.now())
            )
        )
        total, container_seconds = session.execute(
            select(
                func.coalesce(func.sum(Run.cost_usd), 0),
                func.coalesce(func.sum(Run.billed_seconds), 0),
            )
        ).one()
        failures = dict(
            session.execute(
                select(Run.failure_kind, func.count())
                .where(
                    Run.failure_kind.is_not(None),
                    Run.finished_at >= func.now() - text("interval '1 day'"),
                )
                .group_by(Run.failure_kind)
            ).all()
        )
        batches = [
            BatchSpend(str(b.id), b.name, b.state, b.budget_usd, b.reserved_usd, b.spent_usd)
            for b in session.scalars(
                select(Batch)
                .where(Batch.state.in_((BatchState.OPEN, BatchState.PAUSED)))
                .order_by(Batch.created_at.desc())
                .limit(100)
            )
        ]
        lag = _seconds(
            session,
            "SELECT extract(epoch FROM now() - min(heartbeat_at)) FROM runs "
            "WHERE state IN ('pending', 'launching', 'running')",
        )
        oldest = _seconds(
            session,
            "SELECT extract(epoch FROM now() - min(created_at)) FROM jobs WHERE state = 'queued'",
        )
    return Summary(
        queues=queue_depths(queue_sizes, settings),
        jobs_by_state=jobs_by_state,
        running_containers=int(running),
        running_cpu=Decimal(cpu or 0),
        spend_today_usd=Decimal(today or 0),
        spend_total_usd=Decimal(total or 0),
        container_seconds_total=float(container_seconds or 0),
        batches=batches,
        failures_by_kind_24h={str(k): int(v) for k, v in failures.items()},
        supervision_lag_s=max(lag, 0.0),
        oldest_queued_s=max(oldest, 0.0),
    )


def prometheus_text(summary: Summary) -> str:
    """Render a summary in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    metric(
        "clipyard_jobs",
        "gauge",
        "Jobs by state.",
        [(f'{{state="{s}"}}', n) for s, n in sorted(summary.jobs_by_state.items())],
    )
    metric(
        "clipyard_queue_depth",
        "gauge",
        "Queue entries by queue and state.",
        [
            (f'{{queue="{q}",state="{s}"}}', n)
            for q, sizes in sorted(summary.queues.items())
            for s, n in sorted(sizes.items())
        ],
    )
    metric(
        "clipyard_running_containers",
        "gauge",
        "Containers of live runs.",
        [("", summary.running_containers)],
    )
    metric(
        "clipyard_supervision_lag_seconds",
        "gauge",
        "Age of the oldest heartbeat among live runs.",
        [("", summary.supervision_lag_s)],
    )
    metric(
        "clipyard_oldest_queued_seconds",
        "gauge",
        "How long the oldest queued job waited.",
        [("", summary.oldest_queued_s)],
    )
    metric(
        "clipyard_container_seconds_total",
        "counter",
        "Billed container seconds.",
        [("", summary.container_seconds_total)],
    )
    metric(
        "clipyard_spend_usd_total",
        "counter",
        "Money spent on containers, in dollars.",
        [("", float(summary.spend_total_usd))],
    )
    metric(
        "clipyard_spend_today_usd",
        "gauge",
        "Money spent since midnight (UTC), in dollars.",
        [("", float(summary.spend_today_usd))],
    )
    metric(
        "clipyard_run_failures_24h",
        "gauge",
        "Failed runs of the last day by kind.",
        [(f'{{kind="{k}"}}', n) for k, n in sorted(summary.failures_by_kind_24h.items())],
    )
    return "\n".join(lines) + "\n"
