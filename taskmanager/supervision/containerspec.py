"""What each attempt's container is: its deterministic name and its spec."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from taskmanager.backends.base import APP_TAG, ContainerSpec
from taskmanager.models import Job, Run, Template, Upload
from taskmanager.settings import Settings
from taskmanager.storage import Storage
from taskmanager.storage.keys import output_key

OUTPUT_VIDEO = "video.mp4"
OUTPUT_POSTER = "poster.jpg"
# The attempt's deadline (epoch seconds), which the image enforces itself (jobimages).
DEADLINE_ENVIRONMENT = "CLIPYARD_DEADLINE_AT"


def container_name(job_id: uuid.UUID, attempt: int) -> str:
    """Return the attempt's container name: the same for every manager, valid for ACI."""
    return f"cy-{job_id.hex}-{attempt}"


def container_tags(run: Run, lease_token: int, deployment_id: str) -> dict[str, str]:
    """Return the tags that mark a container as ours and tie it to its run."""
    return {
        "app": APP_TAG,
        "deployment": deployment_id,
        "job_id": str(run.job_id),
        "attempt": str(run.attempt),
        "lease_token": str(lease_token),
    }


class FakeJobNotAllowed(ValueError):
    """A job asked for the scripted stand-in image where it is not enabled."""


def fake_args(fake: dict[str, Any], attempt: int) -> list[str]:
    """Turn a job's ``fake`` parameters into the stand-in container's arguments.

    ``exit_codes`` lists the exit code of each attempt in turn (the last repeats), so a
    test can script "fail transiently, then succeed".
    """
    codes = fake.get("exit_codes") or [fake.get("exit_code", 0)]
    exit_code = int(codes[min(attempt, len(codes)) - 1])
    args = ["--seconds", str(float(fake.get("seconds", 1.0))), "--exit-code", str(exit_code)]
    args += ["--steps", str(int(fake.get("steps", 4)))]
    if fake.get("hang"):
        args.append("--hang")
    if fake.get("ignore_sigterm"):
        args.append("--ignore-sigterm")
    return args


def build_spec(
    job: Job,
    run: Run,
    lease_token: int,
    template: Template,
    upload: Upload,
    *,
    launched_at: datetime,
    storage: Storage,
    settings: Settings,
) -> ContainerSpec:
    """Build the container spec for ``run``: fake stand-in or the compositor with its URLs.

    ``launched_at`` (database time, just before the create request) starts the billed
    window; the container is told its deadline on that window and ends itself there.
    """
    deadline_at = launched_at + timedelta(seconds=job.max_runtime_s)
    common: dict[str, Any] = {
        "name": run.container_name,
        "cpu": run.cpu,
        "memory_gb": run.memory_gb,
        "tags": container_tags(run, lease_token, settings.deployment_id),
        "is_spot": run.is_spot,
        "env": {DEADLINE_ENVIRONMENT: f"{deadline_at.timestamp():.3f}"},
    }
    fake = job.params.get("fake")
    if fake is not None:
        if not settings.allow_fake_jobs:
            raise FakeJobNotAllowed("this installation does not run fake jobs")
        return ContainerSpec(image="fake", args=fake_args(fake, run.attempt), **common)
    read_ttl = timedelta(seconds=settings.input_url_ttl_s)
    write_ttl = timedelta(seconds=job.max_runtime_s + settings.output_url_margin_s)
    video_key = output_key(job.id, run.attempt, OUTPUT_VIDEO)
    poster_key = output_key(job.id, run.attempt, OUTPUT_POSTER)
    secure_env = {
        "CLIPYARD_TEMPLATE_VIDEO_URL": storage.read_url(template.video_key, read_ttl),
        "CLIPYARD_TRACK_URL": storage.read_url(template.track_key, read_ttl),
        "CLIPYARD_IMAGE_URL": storage.read_url(upload.blob_key, read_ttl),
        "CLIPYARD_OUTPUT_URL": storage.write_url(video_key, write_ttl),
        "CLIPYARD_POSTER_URL": storage.write_url(poster_key, write_ttl),
    }
    if template.matte_key:
        secure_env["CLIPYARD_MATTE_URL"] = storage.read_url(template.matte_key, read_ttl)
    args = ["run"]
    crop = job.params.get("crop")
    if crop:
        args += ["--crop", ",".join(str(int(v)) for v in crop)]
    for option in ("crf", "preset"):
        if option in job.params:
            args += [f"--{option}", str(job.params[option])]
    return ContainerSpec(
        image=settings.compositor_image, args=args, secure_env=secure_env, **common
    )
