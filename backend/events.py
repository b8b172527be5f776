"""Server-Sent Events for one job: resumable by ``Last-Event-ID``, ended when it finishes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from flask import Response, stream_with_context

from backend.schemas import EventOut
from backend.services import services
from taskmanager.jobs import get_job, job_events
from taskmanager.states import TERMINAL_JOB_STATES, JobState


def _frame(event: EventOut) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"


def event_stream(job_id: uuid.UUID, after: int) -> Response:
    """Answer a stream of the job's events with an id greater than ``after``."""
    found = services()
    hub, sessions, settings = found.hub, found.sessions, found.settings

    def generate() -> Iterator[str]:
        last = after
        wake = hub.subscribe(job_id)
        try:
            # Tell the browser how soon to reconnect after a dropped connection.
            yield "retry: 2000\n\n"
            while True:
                wake.clear()
                # State first: if it was terminal already, the event that ended the job
                # was committed with it and the read below sees it.
                is_terminal = JobState(get_job(sessions, job_id).state) in TERMINAL_JOB_STATES
                batch = job_events(sessions, job_id, after=last)
                for event in batch:
                    last = event.id
                    yield _frame(EventOut.model_validate(event))
                if not batch:
                    if is_terminal:
                        yield "event: end\ndata: {}\n\n"
                        return
                    if not wake.wait(settings.sse_keepalive_s):
                        yield ": keep-alive\n\n"
        finally:
            hub.unsubscribe(job_id, wake)

    response = Response(stream_with_context(generate()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
