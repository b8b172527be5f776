"""Jobs: submit, list, inspect, cancel, retry, fetch results, follow events."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from flask import Blueprint, Response, request

from backend.auth import login_required, rate_limit, require_caller
from backend.blobs import send_blob
from backend.bodies import answer, parse_body
from backend.events import event_stream
from backend.problems import validation_problem_for
from backend.schemas import EventList, EventOut, JobCreate, JobOut, JobPage
from backend.services import services
from taskmanager.jobs import (
    JobRequest,
    JobStateConflict,
    cancel_job,
    get_job,
    job_events,
    list_jobs,
    retry_job,
    submit_job,
)
from taskmanager.states import TERMINAL_JOB_STATES, JobState

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")
MAX_PAGE = 200


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """Return an opaque cursor for the page after the job (created_at, job_id)."""
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID] | None:
    """Return the (created_at, id) a cursor encodes, or None if it is malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        return (when, uuid.UUID(job_id)) if when.tzinfo is not None else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


@bp.post("/jobs")
@login_required
def create() -> Response:
    """Submit a job; the same Idempotency-Key again returns the job already made."""
    caller = require_caller()
    settings = services().settings
    body = parse_body(JobCreate)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200 and key.isprintable()):
        return validation_problem_for("idempotency_key", "must be 1 to 200 printable characters")
    rate_limit("submit", settings.submit_rate_per_minute, user_key=str(caller.id))
    crop = body.crop
    job, created = submit_job(
        services().sessions,
        services().enqueuer,
        settings,
        JobRequest(
            owner_id=caller.id,
            template_name=body.template,
            upload_id=body.upload_id,
            crop=(crop.x, crop.y, crop.width, crop.height) if crop else None,
            idempotency_key=key,
            batch_id=body.batch_id,
            row_id=body.row_id,
            max_attempts=body.max_attempts,
            max_runtime_s=body.max_runtime_s,
            params={"fake": body.fake} if body.fake is not None else {},
            is_limited=not caller.is_operator,
        ),
    )
    response = answer(JobOut.model_validate(job), 202)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/jobs")
@login_required
def index() -> Response:
    """List jobs, newest first; filters: state, template, batch_id; cursor pagination."""
    caller = require_caller()
    args = request.args
    states: list[JobState] = []
    for value in args.getlist("state"):
        try:
            states.append(JobState(value))
        except ValueError:
            return validation_problem_for(
                "state", f"must be one of {', '.join(s.value for s in JobState)}"
            )
    batch_id = None
    if args.get("batch_id"):
        try:
            batch_id = uuid.UUID(args["batch_id"])
        except ValueError:
            return validation_problem_for("batch_id", "must be a UUID")
    try:
        limit = int(args.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        return validation_problem_for("limit", f"must be an integer from 1 to {MAX_PAGE}")
    template = args.get("template") or None
    if template is not None and not (len(template) <= 100 and template.isprintable()):
        return validation_problem_for("template", "must be a template name")
    before = None
    if args.get("cursor"):
        before = decode_cursor(args["cursor"])
        if before is None:
            return validation_problem_for("cursor", "is not a cursor this API handed out")
    jobs = list_jobs(
        services().sessions,
        owner_id=caller.owner_filter(),
        states=states or None,
        batch_id=batch_id,
        template_name=template,
        before=before,
        limit=limit + 1,
    )
    page = jobs[:limit]
    cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(jobs) > limit else None
    return answer(JobPage(items=[JobOut.model_validate(j) for j in page], next_cursor=cursor))


@bp.get("/jobs/<uuid:job_id>")
@login_required
def show(job_id: uuid.UUID) -> Response:
    """Return one job."""
    job = get_job(services().sessions, job_id, owner_id=require_caller().owner_filter())
    return answer(JobOut.model_validate(job))


@bp.post("/jobs/<uuid:job_id>/cancel")
@login_required
def cancel(job_id: uuid.UUID) -> Response:
    """Cancel a job (at once if nothing runs; else its container is stopped)."""
    job = cancel_job(services().sessions, job_id, owner_id=require_caller().owner_filter())
    return answer(JobOut.model_validate(job), 202)


@bp.post("/jobs/<uuid:job_id>/retry")
@login_required
def retry(job_id: uuid.UUID) -> Response:
    """Queue a failed, cancelled or timed-out job again."""
    caller = require_caller()
    job = retry_job(
        services().sessions,
        services().enqueuer,
        job_id,
        owner_id=caller.owner_filter(),
        max_retries=None if caller.is_operator else services().settings.user_max_retries_per_job,
    )
    return answer(JobOut.model_validate(job), 202)


@bp.get("/jobs/<uuid:job_id>/result")
@login_required
def result(job_id: uuid.UUID) -> Response:
    """Send the finished video (a redirect to a short-lived URL, or a ranged stream)."""
    job = get_job(services().sessions, job_id, owner_id=require_caller().owner_filter())
    if job.output_key is None:
        raise JobStateConflict(f"the job is {job.state} and has no result yet")
    return send_blob(job.output_key, mimetype="video/mp4", download_name=f"{job.id}.mp4")


@bp.get("/jobs/<uuid:job_id>/poster")
@login_required
def poster(job_id: uuid.UUID) -> Response:
    """Send the finished video's poster image."""
    job = get_job(services().sessions, job_id, owner_id=require_caller().owner_filter())
    if job.poster_key is None:
        raise JobStateConflict(f"the job is {job.state} and has no poster yet")
    return send_blob(job.poster_key, mimetype="image/jpeg")


@bp.get("/jobs/<uuid:job_id>/events")
@login_required
def events(job_id: uuid.UUID) -> Response:
    """Follow a job's events: Server-Sent Events, or JSON with ``?after=`` for polling."""
    job = get_job(services().sessions, job_id, owner_id=require_caller().owner_filter())
    wants_stream = request.accept_mimetypes.best == "text/event-stream"
    raw_after = request.args.get("after")
    if wants_stream and raw_after is None:
        raw_after = request.headers.get("Last-Event-ID", "0") or "0"
    try:
        after = int(raw_after or "0")
    except ValueError:
        after = -1
    if after < 0:
        return validation_problem_for("after", "must be a non-negative event id")
    if wants_stream:
        caller_id = require_caller().id
        slots = services().streams
        slots.acquire(caller_id)  # 429 beyond the caps: the web app then polls
        try:
            response = event_stream(job.id, after)
        except BaseException:
            slots.release(caller_id)
            raise
        response.call_on_close(lambda: slots.release(caller_id))
        return response
    found = job_events(services().sessions, job.id, after=after)
    terminal = JobState(get_job(services().sessions, job.id).state) in TERMINAL_JOB_STATES
    items = [EventOut.model_validate(e) for e in found]
    return answer(EventList(items=items, is_terminal=terminal))
