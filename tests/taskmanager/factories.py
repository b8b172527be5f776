"""Small builders for rows the tests need (each test owns its database)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.orm import Session

from taskmanager.models import Job, Run, Template, Upload, User


def frame_template(**overrides: object) -> Template:
    """Return (unsaved) a row for the 1280x720, 5 s "frame" template; ``overrides`` win."""
    fields: dict[str, object] = {
        "name": "frame",
        "title": "Frame",
        "duration_s": 5.0,
        "fps": 25.0,
        "width": 1280,
        "height": 720,
        "frame_count": 125,
        "placement_aspect": 1.5,
        "video_key": "templates/frame/video.mp4",
        "track_key": "templates/frame/track.json",
    }
    return Template(**(fields | overrides))


def make_job(session: Session, **overrides: object) -> Job:
    """Insert a user, template, upload and one queued job; return the job."""
    user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", password_hash="x", role="user")
    template = frame_template(name=f"t-{uuid.uuid4().hex[:8]}")
    session.add_all([user, template])
    session.flush()
    upload = Upload(
        owner_id=user.id,
        blob_key=f"uploads/{user.id}/{uuid.uuid4()}",
        content_type="image/jpeg",
        size_bytes=10,
        sha256="0" * 64,
        width=10,
        height=10,
    )
    session.add(upload)
    session.flush()
    fields: dict[str, object] = {
        "owner_id": user.id,
        "template_id": template.id,
        "upload_id": upload.id,
        "max_runtime_s": 600,
        "cpu": Decimal("1"),
        "memory_gb": Decimal("1.5"),
        "max_attempts": 3,
    }
    fields.update(overrides)
    job = Job(**fields)
    session.add(job)
    session.flush()
    return job


def make_run(session: Session, job: Job, attempt: int = 1) -> Run:
    """Insert a pending run for ``job``'s attempt."""
    run = Run(
        job_id=job.id,
        attempt=attempt,
        container_name=f"cy-{job.id.hex[:20]}-{attempt}",
        backend="local",
        cpu=job.cpu,
        memory_gb=job.memory_gb,
    )
    session.add(run)
    session.flush()
    return run


def make_owner_upload_template(
    session: Session, template_name: str = "frame", duration_s: float = 5.0
) -> tuple[uuid.UUID, uuid.UUID]:
    """Insert a user, a 640x480 upload of theirs and a template; return (user, upload) ids."""
    user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
    session.add(user)
    session.flush()
    upload = Upload(
        owner_id=user.id,
        blob_key=f"uploads/{user.id}/photo",
        content_type="image/png",
        size_bytes=1,
        sha256="0" * 64,
        width=640,
        height=480,
    )
    template = Template(
        name=template_name,
        title=template_name.title(),
        duration_s=duration_s,
        fps=25,
        width=1280,
        height=720,
        frame_count=int(duration_s * 25),
        placement_aspect=1.5,
        video_key=f"templates/{template_name}/video.mp4",
        track_key=f"templates/{template_name}/track.json",
    )
    session.add_all([upload, template])
    session.flush()
    return user.id, upload.id
