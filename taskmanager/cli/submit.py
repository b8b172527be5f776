"""``clipyard submit``: one job from the terminal, through the API like the web app.

Uploads the photo (skipped when the same bytes were uploaded before), submits the job
and, with ``--wait``, shows its progress until it ends, then prints where the video is
(and downloads it with ``--output``). Exit 4 when the job ended without a video.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import requests
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from taskmanager.batches.manifest import parse_crop
from taskmanager.cli.apiclient import ApiClient
from taskmanager.cli.context import EXIT_JOBS_UNSUCCESSFUL, CliError, fail_unavailable
from taskmanager.cli.login import api_options, client_for, handles_api_errors
from taskmanager.states import TERMINAL_JOB_STATES, JobState

_POLL_S = 0.5
_DOWNLOAD_CHUNK = 1024 * 1024


class JobUnsuccessful(click.ClickException):
    """The job failed, timed out or was cancelled (exit code 4)."""

    exit_code = EXIT_JOBS_UNSUCCESSFUL


def crop_option(text: str | None) -> dict[str, int] | None:
    """Read ``--crop`` as a manifest's crop column is read; raise naming what is wrong."""
    if text is None:
        return None
    reasons: list[str] = []
    box = parse_crop({"crop": text}, reasons)
    if box is None:
        raise CliError(f"--crop {text!r}: {'; '.join(reasons)}")
    x, y, width, height = box
    return {"x": x, "y": y, "width": width, "height": height}


def wait_for(client: ApiClient, job: dict[str, Any]) -> dict[str, Any]:
    """Show the job's progress until it reaches a terminal state; return it then."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task(job["state"], total=1.0)
        while job["state"] not in TERMINAL_JOB_STATES:
            time.sleep(_POLL_S)
            job = client.get_job(job["id"])
            progress.update(bar, completed=job["progress"], description=job["state"])
        if job["state"] == JobState.SUCCEEDED:
            progress.update(bar, completed=1.0)
    return job


def download(client: ApiClient, job_id: str, target: Path) -> int:
    """Stream the job's video into ``target`` (through a temporary name); return bytes."""
    partial = target.with_name(target.name + ".part")
    # Follows the redirect to a short-lived storage URL in Azure; requests drops the
    # Authorization header when the host changes.
    with client.http.get(
        f"{client.base}/api/v1/jobs/{job_id}/result", stream=True, timeout=client.timeout_s
    ) as response:
        if response.status_code != 200:
            raise CliError(f"the result could not be downloaded (HTTP {response.status_code})")
        size = 0
        with partial.open("wb") as out:
            for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                out.write(chunk)
                size += len(chunk)
    partial.replace(target)
    return size


@click.command()
@api_options
@click.option("--template", "-t", required=True, help="Template name (see the web app).")
@click.option(
    "--image",
    "-i",
    required=True,
    help="The photo.",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--crop", help="Part of the photo to use: x,y,width,height in pixels.")
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --wait: also download the video here.",
)
@handles_api_errors
def submit(
    api_url: str | None,
    token: str | None,
    template: str,
    image: Path,
    crop: str | None,
    wait: bool,
    output: Path | None,
) -> None:
    """Composite one photo into a template; print the job (and, with --wait, the video)."""
    if output is not None and not wait:
        raise CliError("--output needs --wait")
    client = client_for(api_url, token)
    upload = client.upload(image)
    body: dict[str, Any] = {"template": template, "upload_id": upload["id"]}
    if (box := crop_option(crop)) is not None:
        body["crop"] = box
    job = client.create_job(body)
    click.echo(f"job {job['id']} {job['state']}")
    if not wait:
        return
    job = wait_for(client, job)
    if job["state"] != JobState.SUCCEEDED:
        reason = job.get("error_message") or job.get("error_code") or "no reason recorded"
        raise JobUnsuccessful(f"job {job['id']} {job['state']}: {reason}")
    click.echo(f"video: {client.base}{job['result_url']}")
    if output is not None:
        try:
            size = download(client, job["id"], output)
        except requests.RequestException as exc:
            fail_unavailable("the result's storage", exc)
        click.echo(f"saved {size} bytes to {output}")
