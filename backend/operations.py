"""Every API operation: method, path, auth, body and answers, in one table.

The OpenAPI document (``openapi.py``) is built from ``OPERATIONS``, and the
authorization-matrix test walks the same list, so the document and the tests cannot
drift from each other silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from backend import schemas as s

Auth = Literal["none", "user", "operator"]
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


@dataclass(frozen=True)
class Operation:
    """One method on one path, with what it takes and what it answers."""

    method: str
    path: str
    summary: str
    tag: str
    auth: Auth
    body: type[BaseModel] | Literal["multipart"] | None = None
    answers: dict[int, type[BaseModel] | str | None] = field(default_factory=dict)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    # Errors besides the auth ones that the route can answer.
    errors: tuple[int, ...] = ()


def _uuid_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


OPERATIONS: list[Operation] = [
    Operation("get", "/healthz", "Liveness", "ops", "none", answers={200: s.Status}),
    Operation(
        "get",
        "/readyz",
        "Readiness: database, Redis, storage",
        "ops",
        "none",
        answers={200: s.Status, 503: s.Status},
    ),
    Operation(
        "get", "/metrics", "Prometheus metrics", "ops", "operator", answers={200: "text/plain"}
    ),
    Operation("get", "/api/v1/health", "Database health", "ops", "none", answers={200: s.Status}),
    Operation(
        "post",
        "/api/v1/auth/signup",
        "Create an account and sign in",
        "auth",
        "none",
        body=s.Credentials,
        answers={201: s.SessionOut},
        errors=(403, 409, 415, 422, 429),
    ),
    Operation(
        "post",
        "/api/v1/auth/login",
        "Sign in (sets the session cookie)",
        "auth",
        "none",
        body=s.Credentials,
        answers={200: s.SessionOut},
        errors=(401, 415, 422, 429),
    ),
    Operation("post", "/api/v1/auth/logout", "Sign out", "auth", "user", answers={204: None}),
    Operation(
        "get",
        "/api/v1/auth/me",
        "The caller and the CSRF token",
        "auth",
        "user",
        answers={200: s.SessionOut},
    ),
    Operation(
        "get", "/api/v1/tokens", "List your API tokens", "auth", "user", answers={200: s.TokenList}
    ),
    Operation(
        "post",
        "/api/v1/tokens",
        "Create an API token",
        "auth",
        "user",
        body=s.TokenCreate,
        answers={201: s.TokenCreated},
        errors=(415, 422),
    ),
    Operation(
        "delete",
        "/api/v1/tokens/{token_id}",
        "Revoke an API token",
        "auth",
        "user",
        parameters=[_uuid_param("token_id")],
        answers={204: None},
        errors=(404,),
    ),
    Operation(
        "post",
        "/api/v1/uploads",
        "Upload a photo (multipart field 'file')",
        "uploads",
        "user",
        body="multipart",
        answers={201: s.UploadOut},
        errors=(413, 415, 422, 429),  # 429: photos already being checked (Retry-After)
    ),
    Operation(
        "get",
        "/api/v1/uploads",
        "Find your uploads of a file by its SHA-256",
        "uploads",
        "user",
        answers={200: s.UploadList},
        errors=(422,),
        parameters=[
            {
                "name": "sha256",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            }
        ],
    ),
    Operation(
        "get",
        "/api/v1/uploads/{upload_id}",
        "Describe an upload",
        "uploads",
        "user",
        parameters=[_uuid_param("upload_id")],
        answers={200: s.UploadOut},
        errors=(404,),
    ),
    Operation(
        "get",
        "/api/v1/templates",
        "List templates",
        "templates",
        "user",
        answers={200: s.TemplateList},
    ),
    Operation(
        "get",
        "/api/v1/templates/{name}/poster",
        "A template's poster",
        "templates",
        "user",
        parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        answers={200: "image/jpeg", 302: None},
        errors=(404,),
    ),
    Operation(
        "get",
        "/api/v1/templates/{name}/video",
        "A template's video (preview)",
        "templates",
        "user",
        parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        answers={200: "video/mp4", 302: None},
        errors=(404,),
    ),
    Operation(
        "post",
        "/api/v1/jobs",
        "Submit a job",
        "jobs",
        "user",
        body=s.JobCreate,
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        ],
        answers={202: s.JobOut},
        errors=(415, 422, 429),
    ),
    Operation(
        "get",
        "/api/v1/jobs",
        "List jobs",
        "jobs",
        "user",
        answers={200: s.JobPage},
        parameters=[
            _query(
                "state",
                {
                    "type": "string",
                    "enum": [
                        "queued",
                        "starting",
                        "running",
                        "retry_wait",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "timed_out",
                    ],
                },
                "Only jobs in this state (repeatable).",
            ),
            _query("template", {"type": "string"}, "Only jobs of this template."),
            _query("batch_id", {"type": "string", "format": "uuid"}, "Only this batch."),
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 200},
                "Page size (default 50).",
            ),
            _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
        ],
        errors=(422,),
    ),
    Operation(
        "get",
        "/api/v1/jobs/{job_id}",
        "Get a job",
        "jobs",
        "user",
        parameters=[JOB_ID],
        answers={200: s.JobOut},
        errors=(404,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/{job_id}/cancel",
        "Cancel a job",
        "jobs",
        "user",
        parameters=[JOB_ID],
        answers={202: s.JobOut},
        errors=(404,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/{job_id}/retry",
        "Retry a failed job",
        "jobs",
        "user",
        parameters=[JOB_ID],
        answers={202: s.JobOut},
        errors=(404, 409),
    ),
    Operation(
        "get",
        "/api/v1/jobs/{job_id}/result",
        "The finished video",
        "jobs",
        "user",
        parameters=[JOB_ID],
        answers={200: "video/mp4", 206: "video/mp4", 302: None},
        errors=(404, 409, 416),
    ),
    Operation(
        "get",
        "/api/v1/jobs/{job_id}/poster",
        "The finished video's poster",
        "jobs",
        "user",
        parameters=[JOB_ID],
        answers={200: "image/jpeg", 302: None},
        errors=(404, 409),
    ),
    Operation(
        "get",
        "/api/v1/jobs/{job_id}/events",
        "A job's events: SSE (Accept: text/event-stream) or JSON",
        "jobs",
        "user",
        parameters=[
            JOB_ID,
            _query("after", {"type": "integer", "minimum": 0}, "Only events with a greater id."),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
            },
        ],
        answers={200: s.EventList},
        errors=(404, 422, 429),  # 429: no stream slot free (the client polls instead)
    ),
    Operation(
        "post",
        "/api/v1/batches",
        "Create a batch",
        "batches",
        "operator",
        body=s.BatchCreate,
        answers={201: s.BatchOut},
        errors=(409, 415, 422),
    ),
    Operation(
        "get",
        "/api/v1/batches",
        "List batches",
        "batches",
        "operator",
        answers={200: s.BatchList},
        errors=(422,),
        parameters=[
            _query(
                "name",
                {"type": "string", "minLength": 1, "maxLength": 200},
                "Only the caller's batch of this name.",
            )
        ],
    ),
    Operation(
        "get",
        "/api/v1/batches/{batch_id}",
        "Get a batch",
        "batches",
        "operator",
        parameters=[_uuid_param("batch_id")],
        answers={200: s.BatchOut},
        errors=(404,),
    ),
    Operation(
        "post",
        "/api/v1/batches/plan",
        "Estimate a batch; nothing is created",
        "batches",
        "operator",
        body=s.PlanIn,
        answers={200: s.PlanOut},
        errors=(415, 422),
    ),
    Operation(
        "post",
        "/api/v1/batches/{batch_id}/jobs",
        "Create jobs from manifest rows (idempotent by row_id)",
        "batches",
        "operator",
        body=s.BatchRowsIn,
        parameters=[_uuid_param("batch_id")],
        answers={200: s.RowResultList},
        errors=(404, 409, 415, 422),
    ),
    Operation(
        "post",
        "/api/v1/batches/{batch_id}/budget",
        "Set the budget (resumes a batch paused by it)",
        "batches",
        "operator",
        body=s.BudgetSet,
        parameters=[_uuid_param("batch_id")],
        answers={200: s.BatchOut},
        errors=(404, 409, 415, 422),
    ),
    Operation(
        "post",
        "/api/v1/batches/{batch_id}/cancel",
        "Cancel a batch",
        "batches",
        "operator",
        parameters=[_uuid_param("batch_id")],
        answers={202: s.BatchOut},
        errors=(404,),
    ),
    Operation(
        "post",
        "/api/v1/batches/{batch_id}/retry-failed",
        "Retry a batch's failed and timed-out jobs",
        "batches",
        "operator",
        parameters=[_uuid_param("batch_id")],
        answers={202: s.RetryOut},
        errors=(404, 409),
    ),
    Operation(
        "get",
        "/api/v1/batches/{batch_id}/report",
        "One row per job of a batch",
        "batches",
        "operator",
        answers={200: s.ReportPage},
        errors=(404, 422),
        parameters=[
            _uuid_param("batch_id"),
            _query("cursor", {"type": "string"}, "next_cursor of the last page."),
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 5000},
                "Page size (default 1000).",
            ),
        ],
    ),
    Operation(
        "get",
        "/api/v1/ops/summary",
        "Operations summary",
        "ops",
        "operator",
        answers={200: s.SummaryOut},
    ),
]
