"""Request and response bodies: pydantic models, the single source of the OpenAPI schemas.

Requests are validated by these models (``extra="forbid"``: an unknown field is a
mistake worth reporting); responses are serialised through them, so what the API
answers is what the OpenAPI document says.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskmanager.models import ApiToken, Batch, Job, JobEvent, Template, Upload, User


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Body(BaseModel):
    """Base of request bodies."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
        if _has_nul(data):
            raise ValueError("text may not contain NUL characters")
        return data


_EMAIL_PATTERN = r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$"


class Credentials(Body):
    """Email and password, for sign-up and sign-in."""

    email: str = Field(min_length=3, max_length=320, pattern=_EMAIL_PATTERN)
    password: str = Field(min_length=8, max_length=1024)


class TokenCreate(Body):
    """A new API token's name and lifetime."""

    name: str = Field(min_length=1, max_length=100)
    ttl_days: int | None = Field(default=None, ge=1, le=3650)


class Crop(Body):
    """The rectangle of the photo to use, in pixels of the stored (upright) photo."""

    x: int = Field(ge=0, le=1_000_000)
    y: int = Field(ge=0, le=1_000_000)
    width: int = Field(gt=0, le=1_000_000)
    height: int = Field(gt=0, le=1_000_000)


class JobCreate(Body):
    """A request for one video."""

    template: str = Field(min_length=1, max_length=100)
    upload_id: uuid.UUID
    crop: Crop | None = None
    batch_id: uuid.UUID | None = None
    row_id: str | None = Field(default=None, min_length=1, max_length=200)
    max_attempts: int | None = Field(default=None, ge=1, le=10)
    max_runtime_s: int | None = Field(default=None, ge=1, le=6 * 3600)
    # Test and benchmark stand-in image; refused unless the server allows fake jobs.
    fake: dict[str, Any] | None = None


class BatchCreate(Body):
    """An operator's new batch."""

    name: str = Field(min_length=1, max_length=200)
    budget_usd: Decimal = Field(ge=0, le=100_000, decimal_places=6)
    max_concurrent: int = Field(default=10, ge=1, le=1000)
    cpu: Decimal | None = Field(default=None, ge=Decimal("0.25"), le=4, decimal_places=2)
    memory_gb: Decimal | None = Field(default=None, ge=Decimal("0.5"), le=16, decimal_places=2)
    max_runtime_s: int | None = Field(default=None, ge=1, le=6 * 3600)
    is_spot: bool = False


_Money = Field(ge=0, le=100_000, decimal_places=6)
_Cpu = Field(default=None, ge=Decimal("0.25"), le=4, decimal_places=2)
_Memory = Field(default=None, ge=Decimal("0.5"), le=16, decimal_places=2)
_Runtime = Field(default=None, ge=1, le=6 * 3600)


class BudgetSet(Body):
    """A batch's new budget."""

    budget_usd: Decimal = _Money


class PlanGroupIn(Body):
    """Manifest rows that share a template and resources (unset: the plan's own)."""

    template: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=1, le=1_000_000)
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime


class PlanIn(Body):
    """What a batch would run: its rows grouped, its resources and concurrency."""

    groups: list[PlanGroupIn] = Field(min_length=1, max_length=1000)
    max_concurrent: int = Field(default=10, ge=1, le=1000)
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime


class BatchRowIn(Body):
    """One manifest row: a job of the batch, idempotent by ``row_id``."""

    row_id: str = Field(min_length=1, max_length=200)
    template: str = Field(min_length=1, max_length=100)
    upload_id: uuid.UUID
    crop: Crop | None = None
    cpu: Decimal | None = _Cpu
    memory_gb: Decimal | None = _Memory
    max_runtime_s: int | None = _Runtime
    # Test and benchmark stand-in image; refused unless the server allows fake jobs.
    fake: dict[str, Any] | None = None


class BatchRowsIn(Body):
    """Rows to create as jobs of the batch (at most 500 per request)."""

    rows: list[BatchRowIn] = Field(min_length=1, max_length=500)


class UserOut(BaseModel):
    """An account, as its owner sees it."""

    id: uuid.UUID
    email: str
    role: Literal["user", "operator"]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        """Describe ``user``."""
        return cls(id=user.id, email=user.email, role=user.role,  # type: ignore[arg-type]
                   created_at=user.created_at)  # fmt: skip


class SessionOut(BaseModel):
    """The signed-in user and the CSRF token to send as ``X-CSRF-Token``."""

    user: UserOut
    csrf_token: str


class TokenOut(BaseModel):
    """An API token without its secret."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        """Describe ``token``."""
        return cls(id=token.id, name=token.name, prefix=token.prefix,
                   created_at=token.created_at, last_used_at=token.last_used_at,
                   expires_at=token.expires_at)  # fmt: skip


class TokenCreated(TokenOut):
    """A new API token with its secret, shown this once."""

    token: str


class TokenList(BaseModel):
    """The caller's tokens."""

    items: list[TokenOut]


class UploadOut(BaseModel):
    """A stored photo."""

    id: uuid.UUID
    content_type: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    created_at: datetime

    @classmethod
    def of(cls, upload: Upload) -> UploadOut:
        """Describe ``upload``."""
        return cls(id=upload.id, content_type=upload.content_type, size_bytes=upload.size_bytes,
                   sha256=upload.sha256, width=upload.width, height=upload.height,
                   created_at=upload.created_at)  # fmt: skip


class TemplateOut(BaseModel):
    """A template video people can pick."""

    name: str
    title: str
    duration_s: float
    fps: float
    width: int
    height: int
    placement_aspect: float
    poster_url: str | None
    preview_url: str

    @classmethod
    def of(cls, template: Template) -> TemplateOut:
        """Describe ``template``."""
        base = f"/api/v1/templates/{template.name}"
        poster = f"{base}/poster" if template.poster_key else None
        return cls(name=template.name, title=template.title, duration_s=template.duration_s,
                   fps=template.fps, width=template.width, height=template.height,
                   placement_aspect=template.placement_aspect, poster_url=poster,
                   preview_url=f"{base}/video")  # fmt: skip


class TemplateList(BaseModel):
    """Every active template."""

    items: list[TemplateOut]


class JobOut(BaseModel):
    """A job and where it is."""

    id: uuid.UUID
    state: str
    template_id: uuid.UUID
    upload_id: uuid.UUID
    batch_id: uuid.UUID | None
    row_id: str | None
    crop: list[int] | None
    progress: float
    attempt: int
    max_attempts: int
    cancel_requested: bool
    error_code: str | None
    error_message: str | None
    estimated_cost_usd: Decimal | None
    actual_cost_usd: Decimal
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result_url: str | None
    poster_url: str | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        """Describe ``job``."""
        base = f"/api/v1/jobs/{job.id}"
        return cls(
            id=job.id, state=job.state, template_id=job.template_id, upload_id=job.upload_id,
            batch_id=job.batch_id, row_id=job.row_id, crop=job.params.get("crop"),
            progress=job.progress, attempt=job.attempt, max_attempts=job.max_attempts,
            cancel_requested=job.cancel_requested, error_code=job.error_code,
            error_message=job.error_message, estimated_cost_usd=job.estimated_cost_usd,
            actual_cost_usd=job.actual_cost_usd, created_at=job.created_at,
            started_at=job.started_at, finished_at=job.finished_at,
            result_url=f"{base}/result" if job.output_key else None,
            poster_url=f"{base}/poster" if job.poster_key else None,
        )  # fmt: skip


class JobPage(BaseModel):
    """One page of jobs; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """One entry of a job's history; ``id`` is the SSE event id."""

    id: int
    kind: str
    from_state: str | None
    to_state: str | None
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        """Describe ``event``."""
        return cls(id=event.id, kind=event.kind, from_state=event.from_state,
                   to_state=event.to_state, data=event.data,
                   created_at=event.created_at)  # fmt: skip


class EventList(BaseModel):
    """Events after the requested id, and whether the job is finished."""

    items: list[EventOut]
    is_terminal: bool


class BatchOut(BaseModel):
    """A batch, its money and its jobs by state."""

    id: uuid.UUID
    name: str
    state: str
    paused_reason: str | None
    budget_usd: Decimal
    reserved_usd: Decimal
    spent_usd: Decimal
    max_concurrent: int
    cpu: Decimal
    memory_gb: Decimal
    max_runtime_s: int
    is_spot: bool
    created_at: datetime
    jobs_by_state: dict[str, int]

    @classmethod
    def of(cls, batch: Batch, jobs_by_state: dict[str, int] | None = None) -> BatchOut:
        """Describe ``batch``."""
        return cls(
            id=batch.id, name=batch.name, state=batch.state, paused_reason=batch.paused_reason,
            budget_usd=batch.budget_usd, reserved_usd=batch.reserved_usd,
            spent_usd=batch.spent_usd, max_concurrent=batch.max_concurrent, cpu=batch.cpu,
            memory_gb=batch.memory_gb, max_runtime_s=batch.max_runtime_s,
            is_spot=batch.is_spot, created_at=batch.created_at,
            jobs_by_state=jobs_by_state or {},
        )  # fmt: skip


class BatchList(BaseModel):
    """Batches, newest first."""

    items: list[BatchOut]


class BatchSpendOut(BaseModel):
    """One open batch's money."""

    id: str
    name: str
    state: str
    budget_usd: Decimal
    reserved_usd: Decimal
    spent_usd: Decimal


class SummaryOut(BaseModel):
    """A snapshot of queues, jobs, containers, spend and failures."""

    queues: dict[str, dict[str, int]]
    jobs_by_state: dict[str, int]
    running_containers: int
    running_cpu: Decimal
    spend_today_usd: Decimal
    spend_total_usd: Decimal
    container_seconds_total: float
    batches: list[BatchSpendOut]
    failures_by_kind_24h: dict[str, int]
    supervision_lag_s: float
    oldest_queued_s: float


class Status(BaseModel):
    """A liveness or readiness answer."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class Problem(BaseModel):
    """An RFC 9457 problem: every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    field: str | None = None


class PriceTableOut(BaseModel):
    """The prices an estimate used."""

    vcpu_hour_usd: Decimal
    gb_hour_usd: Decimal
    spot_factor: Decimal


class PlanGroupOut(BaseModel):
    """One group's estimate and the runtime model behind it."""

    template: str
    count: int
    cpu: Decimal
    memory_gb: Decimal
    max_runtime_s: int
    seconds_per_job: float
    model: Literal["calibrated", "default"]
    sample_runs: int
    vcpu_seconds_per_video_second: float
    cost_usd: Decimal
    spot_cost_usd: Decimal
    max_cost_usd: Decimal


class PlanOut(BaseModel):
    """A batch's estimate: container time, money both ways, wall time; nothing is created."""

    jobs: int
    container_seconds: float
    cost_usd: Decimal
    spot_cost_usd: Decimal
    max_cost_usd: Decimal
    wall_seconds: float
    max_concurrent: int
    model: Literal["calibrated", "default", "mixed"]
    prices: PriceTableOut
    groups: list[PlanGroupOut]


class RowResultOut(BaseModel):
    """The job a manifest row maps to."""

    row_id: str
    job_id: uuid.UUID
    state: str
    is_created: bool


class RowResultList(BaseModel):
    """The jobs of the rows sent, in their order."""

    items: list[RowResultOut]


class ReportRowOut(BaseModel):
    """One job of a batch report."""

    row_id: str | None
    job_id: uuid.UUID
    state: str
    attempts: int
    runtime_s: float
    cost_usd: Decimal
    output_url: str | None
    error_code: str | None
    error_message: str | None


class ReportPage(BaseModel):
    """One page of a batch report; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[ReportRowOut]
    next_cursor: str | None


class RetryOut(BaseModel):
    """How many jobs were queued again, and the batch after."""

    retried: int
    batch: BatchOut


class UploadList(BaseModel):
    """The caller's uploads matching the query."""

    items: list[UploadOut]
