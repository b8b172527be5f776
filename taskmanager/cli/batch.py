"""``clipyard batch``: plan, submit, watch and report an operator's batch through the API.

Human output by default, ``--json`` for scripts. ``submit`` is idempotent: the batch is
found again by name and rows by their ``row_id``, so running it again after Ctrl-C or a
lost connection creates nothing twice and carries on where it stopped.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from taskmanager.batches.manifest import Manifest, ManifestRow, ManifestUnreadable, read_manifest
from taskmanager.cli.apiclient import ApiClient, ApiError, file_sha256
from taskmanager.cli.batchviews import (
    WatchState,
    make_progress,
    print_plan,
    render_watch,
)
from taskmanager.cli.context import EXIT_BATCH_PAUSED, EXIT_JOBS_UNSUCCESSFUL, CliError
from taskmanager.cli.login import api_options, client_for, handles_api_errors
from taskmanager.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES, BatchState, JobState


@dataclass
class Cli:
    """What every batch command shares: the API client (made when first used) and output."""

    api_url: str | None
    token: str | None
    is_json: bool

    @functools.cached_property
    def client(self) -> ApiClient:
        """Return the API client (so --help needs no login)."""
        return client_for(self.api_url, self.token)

    def emit(self, data: Any) -> None:
        """Print ``data`` as one JSON document."""
        click.echo(json.dumps(data, default=str))


pass_cli = click.make_pass_decorator(Cli)


@click.group()
@api_options
@click.option("--json", "is_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def batch(ctx: click.Context, api_url: str | None, token: str | None, is_json: bool) -> None:
    """Run batches of jobs under a hard money budget (operators)."""
    ctx.obj = Cli(api_url, token, is_json)


def _load(cli: Cli, path: Path) -> Manifest:
    names = [t["name"] for t in cli.client.templates()]
    try:
        return read_manifest(path, names)
    except ManifestUnreadable as exc:
        raise CliError(str(exc)) from exc


def _report_errors(cli: Cli, manifest: Manifest) -> None:
    if cli.is_json or not manifest.errors:
        return
    click.echo(f"{len(manifest.errors)} invalid row(s) in {manifest.path}:", err=True)
    for error in manifest.errors:
        click.echo(f"  {error}", err=True)


def _errors_json(manifest: Manifest) -> list[dict[str, Any]]:
    return [{"line": e.line, "row_id": e.row_id, "reasons": e.reasons} for e in manifest.errors]


def _resources(cpu: Decimal | None, memory: Decimal | None, runtime: int | None) -> dict[str, Any]:
    found = {"cpu": cpu, "memory_gb": memory, "max_runtime_s": runtime}
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in found.items() if v is not None}


def _plan_body(
    rows: Iterable[ManifestRow], max_concurrent: int, **resources: Any
) -> dict[str, Any]:
    groups = Counter((r.template, r.cpu, r.memory_gb, r.max_runtime_s) for r in rows)
    return {
        "groups": [
            {"template": template, "count": count, **_resources(cpu, memory, runtime)}
            for (template, cpu, memory, runtime), count in groups.items()
        ],
        "max_concurrent": max_concurrent,
        **_resources(resources["cpu"], resources["memory_gb"], resources["max_runtime_s"]),
    }


def resource_options(command: Any) -> Any:
    """Add the batch-wide resource and concurrency options."""
    for decorator in reversed(
        [
            click.option(
                "--max-concurrent",
                default=10,
                show_default=True,
                type=click.IntRange(1, 1000),
                help="Containers of this batch at once.",
            ),
            click.option("--cpu", type=Decimal, help="vCPUs per job (default: the server's)."),
            click.option("--memory-gb", type=Decimal, help="GB of memory per job."),
            click.option(
                "--max-runtime",
                type=click.IntRange(1, 6 * 3600),
                help="Seconds a job may run before it is stopped (bounds the overrun).",
            ),
            click.option("--spot", is_flag=True, help="Run on discounted, evictable capacity."),
        ]
    ):
        command = decorator(command)
    return command


@batch.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@resource_options
@pass_cli
@handles_api_errors
def plan(
    cli: Cli,
    manifest: Path,
    max_concurrent: int,
    cpu: Decimal | None,
    memory_gb: Decimal | None,
    max_runtime: int | None,
    spot: bool,
) -> None:
    """Check MANIFEST and estimate its cost and time; nothing is created.

    Exits 2 if any row is invalid (after listing them all and estimating the rest).
    """
    found = _load(cli, manifest)
    _report_errors(cli, found)
    estimate = None
    if found.rows:
        estimate = cli.client.plan(
            _plan_body(
                found.rows, max_concurrent, cpu=cpu, memory_gb=memory_gb, max_runtime_s=max_runtime
            )
        )
    if cli.is_json:
        cli.emit(
            {
                "valid_rows": len(found.rows),
                "errors": _errors_json(found),
                "estimate": estimate,
                "spot": spot,
            }
        )
    elif estimate is not None:
        print_plan(estimate, valid=len(found.rows), invalid=len(found.errors), is_spot=spot)
    if found.errors:
        sys.exit(2)


def _upload_all(cli: Cli, rows: list[ManifestRow], parallel: int) -> dict[Path, str]:
    """Upload every distinct local photo (skipping ones already uploaded); map path → id."""
    paths = sorted({r.photo_path for r in rows if r.photo_path is not None})
    uploaded: dict[Path, str] = {}
    if not paths:
        return uploaded

    def one(path: Path) -> tuple[Path, str, bool]:
        digest = file_sha256(path)
        found = cli.client.find_upload(digest)
        if found is not None:
            return path, found["id"], False
        return path, cli.client.post_upload(path)["id"], True

    sent = 0
    with make_progress(cli.is_json) as progress, ThreadPoolExecutor(parallel) as pool:
        task = progress.add_task("photos", total=len(paths))
        for path, upload_id, is_new in pool.map(one, paths):
            uploaded[path] = upload_id
            sent += is_new
            progress.advance(task)
    if not cli.is_json:
        click.echo(f"photos: {sent} uploaded, {len(paths) - sent} already there", err=True)
    return uploaded


def _find_or_create(cli: Cli, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    found = cli.client.find_batch(name)
    if found is not None:
        if found["state"] == BatchState.CANCELLED:
            raise CliError(f"batch {name!r} was cancelled; submit under another --name")
        return found, False
    try:
        return cli.client.create_batch({"name": name, **body}), True
    except ApiError as exc:
        if exc.status != 409:
            raise
        found = cli.client.find_batch(name)  # created meanwhile by another run of submit
        if found is None:
            raise
        return found, False


@batch.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--budget", required=True, type=Decimal, help="Hard budget in US dollars.")
@resource_options
@click.option("--name", help="Batch name (default: the manifest's file name).")
@click.option("--skip-invalid", is_flag=True, help="Submit the valid rows, skip the others.")
@click.option(
    "--parallel",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Photos uploaded at once.",
)
@click.option("--rows-per-request", default=200, show_default=True, type=click.IntRange(1, 500))
@pass_cli
@handles_api_errors
def submit(
    cli: Cli,
    manifest: Path,
    budget: Decimal,
    max_concurrent: int,
    cpu: Decimal | None,
    memory_gb: Decimal | None,
    max_runtime: int | None,
    spot: bool,
    name: str | None,
    skip_invalid: bool,
    parallel: int,
    rows_per_request: int,
) -> None:
    """Upload MANIFEST's photos and create its batch and jobs (safe to run again)."""
    found = _load(cli, manifest)
    _report_errors(cli, found)
    if found.errors and not skip_invalid:
        if cli.is_json:
            cli.emit({"errors": _errors_json(found)})
        raise CliError(f"{len(found.errors)} invalid row(s): fix them or use --skip-invalid")
    if not found.rows:
        raise CliError("no valid rows to submit")
    name = name or manifest.stem
    body = {
        "budget_usd": str(budget),
        "max_concurrent": max_concurrent,
        "is_spot": spot,
        **_resources(cpu, memory_gb, max_runtime),
    }
    batch_found, is_new = _find_or_create(cli, name, body)
    if not is_new and not cli.is_json:
        click.echo(f"resuming batch {name!r} ({batch_found['id']})", err=True)
        if Decimal(batch_found["budget_usd"]) != budget:
            click.echo(
                f"  its budget stays ${batch_found['budget_usd']}: change it with "
                f"clipyard batch budget {name} --set USD",
                err=True,
            )
    uploads = _upload_all(cli, found.rows, parallel)
    created = 0
    with make_progress(cli.is_json) as progress:
        task = progress.add_task("jobs", total=len(found.rows))
        for start in range(0, len(found.rows), rows_per_request):
            chunk = found.rows[start : start + rows_per_request]
            bodies = [
                r.body(uploads[r.photo_path] if r.photo_path else str(r.upload_id)) for r in chunk
            ]
            results = cli.client.add_rows(batch_found["id"], bodies)
            created += sum(1 for r in results if r["is_created"])
            progress.advance(task, len(chunk))
    summary = {
        "batch_id": batch_found["id"],
        "name": name,
        "rows": len(found.rows),
        "created": created,
        "existing": len(found.rows) - created,
        "skipped_invalid": len(found.errors),
    }
    if cli.is_json:
        cli.emit(summary)
        return
    click.echo(
        f"batch {name!r} ({batch_found['id']}): {created} job(s) created, "
        f"{summary['existing']} already there; budget ${batch_found['budget_usd']}, "
        f"at most {batch_found['max_concurrent']} at once"
    )
    click.echo(f"follow it with: clipyard batch watch {name}")


@batch.command()
@click.argument("batch_ref", metavar="BATCH")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 600))
@pass_cli
@handles_api_errors
def watch(cli: Cli, batch_ref: str, interval: float) -> None:
    """Follow BATCH live until every job ended: exit 0 if all succeeded, 4 if any did not.

    Exits 5 when the batch is paused (its budget spent) and nothing runs any more:
    nothing will change until an operator raises the budget, and a script waiting on
    watch should hear so rather than wait forever.
    """
    state = WatchState(started=time.monotonic())
    with render_watch(cli.is_json) as show:
        while True:
            found = cli.client.resolve_batch(batch_ref)
            failures = cli.client.jobs(batch_id=found["id"], state=JobState.FAILED, limit=5)[
                "items"
            ]
            state.observe(found, time.monotonic())
            show(found, failures, state)
            counts = found["jobs_by_state"]
            if counts and all(s in TERMINAL_JOB_STATES for s in counts):
                break
            # While jobs hold a container, a paused batch still moves.
            is_moving = any(counts.get(state) for state in ACTIVE_JOB_STATES)
            if found["state"] == BatchState.PAUSED and not is_moving:
                break
            time.sleep(interval)
    if found["state"] == BatchState.PAUSED and not all(s in TERMINAL_JOB_STATES for s in counts):
        reason = found["paused_reason"] or BatchState.PAUSED
        click.echo(
            f"batch {found['name']} is paused ({reason}) with jobs still queued: raise its "
            f"budget with `clipyard batch budget {found['name']} --set USD` to resume",
            err=True,
        )
        sys.exit(EXIT_BATCH_PAUSED)
    bad = sum(n for s, n in counts.items() if s != JobState.SUCCEEDED)
    if bad:
        sys.exit(EXIT_JOBS_UNSUCCESSFUL)


@batch.command()
@click.argument("batch_ref", metavar="BATCH")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default stdout).")
@pass_cli
@handles_api_errors
def report(cli: Cli, batch_ref: str, fmt: str, output: Any) -> None:
    """Write one row per job: row id, state, attempts, runtime, cost, output URL, error."""
    found = cli.client.resolve_batch(batch_ref)
    base = cli.client.base
    rows = [
        {**row, "output_url": base + row["output_url"] if row["output_url"] else None}
        for row in cli.client.report(found["id"])
    ]
    if fmt == "json" or cli.is_json:
        json.dump(rows, output, indent=1)
        output.write("\n")
        return
    columns = [
        "row_id",
        "job_id",
        "state",
        "attempts",
        "runtime_s",
        "cost_usd",
        "output_url",
        "error_code",
        "error_message",
    ]
    writer = csv.DictWriter(output, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _print_batch(cli: Cli, found: dict[str, Any], headline: str) -> None:
    if cli.is_json:
        cli.emit(found)
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted(found["jobs_by_state"].items())) or "no jobs"
    reason = f" ({found['paused_reason']})" if found.get("paused_reason") else ""
    click.echo(
        f"{headline}: {found['name']} is {found['state']}{reason}; spent "
        f"${found['spent_usd']} + reserved ${found['reserved_usd']} of "
        f"${found['budget_usd']}; {counts}"
    )


@batch.command()
@click.argument("batch_ref", metavar="BATCH")
@pass_cli
@handles_api_errors
def cancel(cli: Cli, batch_ref: str) -> None:
    """Cancel BATCH: nothing more starts, running jobs are stopped."""
    found = cli.client.resolve_batch(batch_ref)
    _print_batch(cli, cli.client.cancel_batch(found["id"]), BatchState.CANCELLED)


@batch.command("retry-failed")
@click.argument("batch_ref", metavar="BATCH")
@pass_cli
@handles_api_errors
def retry_failed(cli: Cli, batch_ref: str) -> None:
    """Queue BATCH's failed and timed-out jobs again."""
    found = cli.client.resolve_batch(batch_ref)
    answer = cli.client.retry_failed(found["id"])
    _print_batch(cli, answer["batch"], f"{answer['retried']} job(s) queued again")


@batch.command("list")
@pass_cli
@handles_api_errors
def list_(cli: Cli) -> None:
    """List batches, newest first."""
    found = cli.client.batches()
    if cli.is_json:
        cli.emit(found)
        return
    click.echo(f"{'name':<30} {'state':<10} {'spent':>12} {'budget':>12}  id")
    for item in found:
        state = item["paused_reason"] or item["state"]
        click.echo(
            f"{item['name'][:30]:<30} {state[:10]:<10} {item['spent_usd']:>12} "
            f"{item['budget_usd']:>12}  {item['id']}"
        )


@batch.command()
@click.argument("batch_ref", metavar="BATCH")
@click.option("--set", "new_budget", type=Decimal, help="New budget in US dollars.")
@pass_cli
@handles_api_errors
def budget(cli: Cli, batch_ref: str, new_budget: Decimal | None) -> None:
    """Show BATCH's money, or --set a new budget (resumes a batch the budget paused)."""
    found = cli.client.resolve_batch(batch_ref)
    if new_budget is None:
        _print_batch(cli, found, "budget")
        return
    _print_batch(cli, cli.client.set_budget(found["id"], str(new_budget)), "budget set")
