"""What the soak checks: money against the stated bound, and what went wrong with the jobs."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import av
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taskmanager.cost import batch_spend_bound
from taskmanager.models import Batch, Job, JobEvent, Run
from taskmanager.settings import Settings
from taskmanager.states import LIVE_RUN_STATES, TERMINAL_JOB_STATES, BatchState, FailureKind
from taskmanager.states import PausedReason as Paused
from tests.benchmarks.soaklib.stack import Stack, compositor_processes

TERMINAL = {state.value for state in TERMINAL_JOB_STATES}
# Frames in a postcard composite (2 s at 15 fps).
POSTCARD_FRAMES = 30


@dataclass(frozen=True)
class Money:
    """A batch's money at one moment, with the bound its guarantee states."""

    state: str
    paused_reason: str | None
    budget_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    bound_usd: Decimal
    # The sum of its runs' own bills: the books balance when this equals spent_usd.
    run_costs_usd: Decimal
    runs: int
    jobs_by_state: dict[str, int]

    @property
    def overspend_usd(self) -> Decimal:
        """Return how far the spend went past the stated bound (0 within it)."""
        return max(Decimal(0), self.spent_usd - self.bound_usd)

    @property
    def books_mismatch_usd(self) -> Decimal:
        """Return how far the runs' bills and the batch's spend disagree."""
        return abs(self.run_costs_usd - self.spent_usd)

    @property
    def is_budget_paused(self) -> bool:
        """Tell whether the batch is paused because its budget is spent."""
        return self.state == BatchState.PAUSED and self.paused_reason == Paused.BUDGET_EXHAUSTED

    def describe(self) -> str:
        """Say it in one line."""
        return (
            f"{self.state}/{self.paused_reason}: spent ${self.spent_usd} (runs' bills "
            f"${self.run_costs_usd}), reserved ${self.reserved_usd}, budget ${self.budget_usd},"
            f" bound ${self.bound_usd}; {self.runs} runs; jobs {self.jobs_by_state}"
        )


def read_money(session: Session, batch_id: str, settings: Settings) -> Money:
    """Read the batch's money, its runs' bills and its stated bound in one transaction."""
    batch = session.get_one(Batch, batch_id)
    costs, runs = session.execute(
        select(func.coalesce(func.sum(Run.cost_usd), 0), func.count())
        .select_from(Run)
        .join(Job, Job.id == Run.job_id)
        .where(Job.batch_id == batch.id)
    ).one()
    states = session.execute(
        select(Job.state, func.count()).where(Job.batch_id == batch.id).group_by(Job.state)
    ).all()
    return Money(
        batch.state,
        batch.paused_reason,
        batch.budget_usd,
        batch.spent_usd,
        batch.reserved_usd,
        batch_spend_bound(session, batch, settings),
        Decimal(costs or 0),
        int(runs),
        {state: int(count) for state, count in states},
    )


def try_read_money(stack: Stack, batch_id: str, settings: Settings) -> Money | None:
    """Read the batch's money, or None while the database is unreachable."""
    try:
        with stack.session() as session:
            return read_money(session, batch_id, settings)
    except SQLAlchemyError:
        return None


@dataclass
class Watcher:
    """Samples the compositors all along: jobs ever seen with two containers at once."""

    doubled: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop.wait(0.1):
            per_job = Counter(compositor_processes().values())
            self.seen.update(per_job)
            self.doubled.update(job for job, count in per_job.items() if count > 1)


def wait_drained(stack: Stack, job_ids: list[str], deadline_s: float) -> bool:
    """Wait until every job is terminal; False if ``deadline_s`` passed first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with stack.session() as session:
                unfinished = session.scalar(
                    select(func.count()).where(Job.id.in_(job_ids), Job.state.not_in(TERMINAL))
                )
            if unfinished == 0:
                return True
        except SQLAlchemyError:
            pass
        time.sleep(0.5)
    return False


def _is_playable(path: Path, frames: int) -> bool:
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0)) == frames
    except (av.FFmpegError, OSError):
        return False


def _is_unlaunched_refusal(run: Run) -> bool:
    """Tell whether a run is a launch the backend refused for now, which never ran."""
    return run.failure_kind == FailureKind.CAPACITY and run.started_at is None


def _describe_job(session: Session, job: Job, runs: list[Run]) -> str:
    attempts = ", ".join(
        f"#{r.attempt} {r.state}/{r.failure_kind or '-'} exit {r.exit_code}" for r in runs
    )
    events = session.scalars(
        select(JobEvent.kind).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
    ).all()
    return f"job {job.id} ({job.state}, batch row {job.row_id}): runs [{attempts}]; events {events}"


@dataclass(frozen=True)
class Findings:
    """What went wrong, counted."""

    lost: int
    stuck: int
    duplicates: int
    bad_outputs: int
    extra_attempts: int
    capacity_refusals: int
    live_runs: int
    # Containers the janitor removed as leaked, and what it booked for them.
    janitor_removals: int
    janitor_booked_usd: Decimal


def find_problems(
    stack: Stack, batch_rows: int, accepted: list[str], watcher: Watcher, killed: Counter[str]
) -> Findings:
    """Count lost, stuck and duplicated jobs, bad outputs and attempts beyond the first.

    Only a container the soak killed itself may cost its job an attempt; a launch the
    backend refused for now costs none and is counted apart.
    """
    with stack.session() as session:
        jobs = {str(job.id): job for job in session.scalars(select(Job))}
        runs_of: dict[str, list[Run]] = defaultdict(list)
        for run in session.scalars(select(Run).order_by(Run.attempt)):
            runs_of[str(run.job_id)].append(run)
        rows = Counter(job.row_id for job in jobs.values() if job.batch_id is not None)
        refusals = [r for runs in runs_of.values() for r in runs if _is_unlaunched_refusal(r)]
        for refusal in refusals:
            print(
                f"# launch refused for now (no attempt spent): {refusal.container_name} "
                f"at {refusal.created_at:%H:%M:%S}",
                file=sys.stderr,
            )
        extra = 0
        for job_id, runs in runs_of.items():
            ran = [r for r in runs if not _is_unlaunched_refusal(r)]
            beyond = max(0, len(ran) - 1 - killed[job_id])
            if beyond:
                extra += beyond
                described = _describe_job(session, jobs[job_id], runs)
                print(f"# extra attempts: {described}", file=sys.stderr)
        removals, booked = _janitor_removals(session, runs_of)
        stuck = [job for job in jobs.values() if job.state not in TERMINAL]
        for job in stuck:
            print(f"# stuck: {_describe_job(session, job, runs_of[str(job.id)])}", file=sys.stderr)
        for job in jobs.values():
            if job.state != "succeeded" and job.state in TERMINAL:
                described = _describe_job(session, job, runs_of[str(job.id)])
                print(f"# unsuccessful: {described}", file=sys.stderr)
    attempts = Counter((job_id, r.attempt) for job_id, runs in runs_of.items() for r in runs)
    doubled = {job for (job, _), count in attempts.items() if count > 1} | watcher.doubled
    blobs = stack.root / "data" / "blobs"
    bad = sum(
        not _is_playable(blobs / job.output_key, POSTCARD_FRAMES)
        for job in jobs.values()
        if job.state == "succeeded" and job.output_key
    )
    states = Counter(job.state for job in jobs.values())
    print(f"# jobs by state: {dict(states)}; runs: {len(attempts)}", file=sys.stderr)
    return Findings(
        lost=len(set(accepted) - set(jobs)) + (batch_rows - len(rows)),
        stuck=len(stuck),
        duplicates=len(doubled) + sum(count - 1 for count in rows.values()),
        bad_outputs=bad,
        extra_attempts=extra,
        capacity_refusals=len(refusals),
        live_runs=sum(r.state in LIVE_RUN_STATES for runs in runs_of.values() for r in runs),
        janitor_removals=removals,
        janitor_booked_usd=booked,
    )


def _janitor_removals(session: Session, runs_of: dict[str, list[Run]]) -> tuple[int, Decimal]:
    """Return how many containers the janitor removed as leaked, and what it booked.

    Prints each removal that booked money, with how long after its run had ended.
    """
    runs = {r.id: r for job_runs in runs_of.values() for r in job_runs}
    events = session.execute(
        select(JobEvent.run_id, JobEvent.data, JobEvent.created_at).where(
            JobEvent.kind == "leaked_container_removed"
        )
    ).all()
    booked = Decimal(0)
    for run_id, data, created_at in events:
        cost = Decimal(str((data or {}).get("cost_usd", "0")))
        booked += cost
        run = runs.get(run_id) if run_id is not None else None
        if cost > 0 and run is not None:
            after = (created_at - run.finished_at).total_seconds() if run.finished_at else None
            print(
                f"# janitor booked ${cost} for {run.container_name} ({run.state}/"
                f"{run.failure_kind or '-'}), removed {after} s after its run ended: {data}",
                file=sys.stderr,
            )
    return len(events), booked
