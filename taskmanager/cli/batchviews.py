"""How ``clipyard batch`` shows things to people: the plan, progress bars, the live view."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from taskmanager.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES, PausedReason

Show = Callable[[dict[str, Any], list[dict[str, Any]], "WatchState"], None]


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def print_plan(estimate: dict[str, Any], *, valid: int, invalid: int, is_spot: bool) -> None:
    """Print a plan for people: totals, both prices, the model behind each template."""
    prices = estimate["prices"]
    click.echo(f"rows: {valid} valid" + (f", {invalid} invalid (not estimated)" if invalid else ""))
    click.echo(
        f"jobs: {estimate['jobs']}   container time: "
        f"{_seconds(estimate['container_seconds'])} ({estimate['container_seconds']:.0f} s)"
    )
    chosen = "spot" if is_spot else "regular"
    click.echo(
        f"cost: ${estimate['cost_usd']} regular, ${estimate['spot_cost_usd']} spot "
        f"(evictions not counted); you chose {chosen}"
    )
    click.echo(f"worst case (every job runs to its max runtime, once): ${estimate['max_cost_usd']}")
    click.echo(
        f"wall time at {estimate['max_concurrent']} at once: {_seconds(estimate['wall_seconds'])}"
    )
    click.echo(
        f"prices: ${prices['vcpu_hour_usd']}/vCPU-hour, ${prices['gb_hour_usd']}/GB-hour, "
        f"spot x{prices['spot_factor']}"
    )
    for group in estimate["groups"]:
        source = (
            f"calibrated from {group['sample_runs']} run(s)"
            if group["model"] == "calibrated"
            else "default figures (no runs measured yet)"
        )
        click.echo(
            f"  {group['template']}: {group['count']} x {group['cpu']} vCPU, "
            f"{group['memory_gb']} GB, ~{group['seconds_per_job']:.1f} s each, "
            f"${group['cost_usd']}; {source}"
        )


def make_progress(is_quiet: bool) -> Progress:
    """Return a progress bar on stderr (hidden for --json)."""
    return Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=is_quiet,
        transient=False,
    )


@dataclass
class WatchState:
    """What the live view remembers between polls: when jobs first ended, for the ETA."""

    started: float
    first_done: int | None = None
    first_at: float = 0.0
    last_done: int = 0
    last_at: float = 0.0
    history: list[tuple[float, int]] = field(default_factory=list)

    def observe(self, batch: dict[str, Any], now: float) -> None:
        """Record how many jobs had ended at ``now``."""
        done = sum(batch["jobs_by_state"].get(s, 0) for s in TERMINAL_JOB_STATES)
        if self.first_done is None:
            self.first_done, self.first_at = done, now
        self.last_done, self.last_at = done, now

    def eta_s(self, total: int) -> float | None:
        """Return the seconds left at the rate seen since watching began, if known."""
        if self.first_done is None or self.last_done <= self.first_done:
            return None
        rate = (self.last_done - self.first_done) / max(1e-6, self.last_at - self.first_at)
        return (total - self.last_done) / rate


def summary(batch: dict[str, Any], state: WatchState) -> dict[str, Any]:
    """Return the figures the live view shows, as plain data (the --json lines)."""
    counts = batch["jobs_by_state"]
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in TERMINAL_JOB_STATES)
    return {
        "batch_id": batch["id"],
        "name": batch["name"],
        "state": batch["state"],
        "paused_reason": batch["paused_reason"],
        "jobs": total,
        "done": done,
        "jobs_by_state": counts,
        "spent_usd": batch["spent_usd"],
        "reserved_usd": batch["reserved_usd"],
        "budget_usd": batch["budget_usd"],
        "eta_s": state.eta_s(total),
    }


def _panel(batch: dict[str, Any], failures: list[dict[str, Any]], state: WatchState) -> Group:
    figures = summary(batch, state)
    total = max(1, figures["jobs"])
    bar = Progress(TextColumn(batch["name"]), BarColumn(), MofNCompleteColumn())
    bar.add_task("", total=total, completed=figures["done"])
    counts = Table.grid(padding=(0, 2))
    for name, count in sorted(figures["jobs_by_state"].items()):
        counts.add_row(name, str(count))
    eta = figures["eta_s"]
    status = batch["state"] + (f" ({batch['paused_reason']})" if batch["paused_reason"] else "")
    active = sum(figures["jobs_by_state"].get(state, 0) for state in ACTIVE_JOB_STATES)
    lines = [
        Text(f"state: {status}   active: {active} of max {batch['max_concurrent']}"),
        Text(
            f"spent ${batch['spent_usd']} + reserved ${batch['reserved_usd']} of budget "
            f"${batch['budget_usd']}   ETA {_seconds(eta) if eta is not None else 'unknown'}"
        ),
    ]
    if batch["paused_reason"] == PausedReason.BUDGET_EXHAUSTED:
        lines.append(
            Text(
                "paused: the budget cannot pay for another job; raise it with "
                f"clipyard batch budget {batch['name']} --set USD",
                style="yellow",
            )
        )
    recent = [
        Text(
            f"failed {f['row_id'] or f['id']}: {f['error_code']}: "
            f"{(f['error_message'] or '')[:100]}",
            style="red",
        )
        for f in failures
    ]
    return Group(bar.get_renderable(), counts, *lines, *recent)


@contextlib.contextmanager
def render_watch(is_json: bool) -> Iterator[Show]:
    """Yield a function that shows one poll: a live panel, plain lines, or JSON lines."""
    console = Console()
    if is_json or not console.is_terminal:

        def show_line(batch: dict[str, Any], _: list[dict[str, Any]], state: WatchState) -> None:
            figures = summary(batch, state)
            if is_json:
                click.echo(json.dumps(figures, default=str))
                return
            counts = ", ".join(f"{n} {s}" for s, n in sorted(figures["jobs_by_state"].items()))
            click.echo(
                f"{figures['done']}/{figures['jobs']} done ({counts}); spent "
                f"${figures['spent_usd']} of ${figures['budget_usd']}"
            )

        yield show_line
        return
    with Live(console=console, refresh_per_second=4) as live:

        def show_live(
            batch: dict[str, Any], failures: list[dict[str, Any]], state: WatchState
        ) -> None:
            live.update(_panel(batch, failures, state))

        yield show_live
