"""The data model: SQLAlchemy 2.0 typed tables, mirrored by the Alembic migrations.

Postgres is the source of truth. Times default to the database clock (``now()``) so
that processes on machines with skewed clocks still agree. Money is ``Numeric`` in
US dollars, never a float.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from taskmanager.states import BatchState, JobState, RunState

# Named constraints, so migrations can refer to (and drop) them predictably.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 6)
Resource = Numeric(6, 2)


def _one_of(column: str, values: Any) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class Base(DeclarativeBase):
    """Base class of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


class User(Base):
    """A person: ``user`` makes videos, ``operator`` also sees everything and runs batches."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_one_of("role", ("user", "operator")), name="role"),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()


class WebSession(Base):
    """A browser's signed-in session: the cookie names it, signing out revokes it here.

    The cookie alone (signed, but held by the client) cannot be taken back; this row can.
    """

    __tablename__ = "web_sessions"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A bearer token for the CLI; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, shown in listings so people can tell them apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "user_id"),)


class Upload(Base):
    """A photo a person uploaded, normalised (EXIF applied, metadata stripped)."""

    __tablename__ = "uploads"
    __table_args__ = (Index(None, "owner_id", "sha256"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    blob_key: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Hash of the bytes the client sent, so a re-upload of the same file is recognised.
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_filename: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created_at()


class Template(Base):
    """A template video with its placement track (and optional occluder matte)."""

    __tablename__ = "templates"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    duration_s: Mapped[float]
    fps: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    frame_count: Mapped[int]
    # Width over height of the region the photo fills; the web app locks its cropper to it.
    placement_aspect: Mapped[float]
    has_audio: Mapped[bool] = mapped_column(Boolean, default=False)
    video_key: Mapped[str] = mapped_column(String(512))
    track_key: Mapped[str] = mapped_column(String(512))
    matte_key: Mapped[str | None] = mapped_column(String(512))
    poster_key: Mapped[str | None] = mapped_column(String(512))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()


class Batch(Base):
    """An operator's set of jobs sharing a money budget and a concurrency cap."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        CheckConstraint(_one_of("state", [s.value for s in BatchState]), name="state"),
        CheckConstraint("budget_usd >= 0", name="budget_not_negative"),
        CheckConstraint("reserved_usd >= 0 AND spent_usd >= 0", name="money_not_negative"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    budget_usd: Mapped[Decimal] = mapped_column(Money)
    # Estimates of admitted, unfinished jobs; replaced by their actual cost as they end.
    reserved_usd: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    max_concurrent: Mapped[int] = mapped_column(Integer, default=10)
    cpu: Mapped[Decimal] = mapped_column(Resource)
    memory_gb: Mapped[Decimal] = mapped_column(Resource)
    max_runtime_s: Mapped[int]
    is_spot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    state: Mapped[str] = mapped_column(
        String(16), default=BatchState.OPEN.value, server_default=BatchState.OPEN.value
    )
    # Why the batch is paused, e.g. "budget_exhausted".
    paused_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One requested video: a photo composited into a template."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key"),
        UniqueConstraint("batch_id", "row_id"),
        CheckConstraint(_one_of("state", [s.value for s in JobState]), name="state"),
        CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="attempt_in_range"),
        CheckConstraint("max_runtime_s > 0", name="max_runtime_positive"),
        CheckConstraint("cpu > 0 AND memory_gb > 0", name="resources_positive"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_fraction"),
        Index(None, "owner_id", "created_at"),
        Index(None, "batch_id", "state"),
        # A batch's next jobs for its free slots, oldest first, without sorting the batch.
        Index(
            "ix_jobs_batch_queued",
            "batch_id",
            "created_at",
            "id",
            postgresql_where=text("state = 'queued'"),
        ),
        # The reconciler and the operations page scan unfinished jobs by state.
        Index(
            "ix_jobs_unfinished_state",
            "state",
            postgresql_where=text("state NOT IN ('succeeded', 'failed', 'cancelled', 'timed_out')"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="RESTRICT"))
    upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("uploads.id", ondelete="RESTRICT"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("batches.id", ondelete="RESTRICT")
    )
    # The manifest's own id for this row, unique within its batch (idempotent resubmit).
    row_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # Compositing parameters: crop rectangle, encoder settings.
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    max_runtime_s: Mapped[int] = mapped_column(Integer)
    cpu: Mapped[Decimal] = mapped_column(Resource)
    memory_gb: Mapped[Decimal] = mapped_column(Resource)
    is_spot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    output_key: Mapped[str | None] = mapped_column(String(512))
    poster_key: Mapped[str | None] = mapped_column(String(512))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(default=0.0, server_default="0")
    estimated_cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    actual_cost_usd: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    # Spot evictions so far: retried without using up an attempt, counted apart.
    evictions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the current attempt holds of its batch's budget (0 when nothing is held).
    reserved_usd: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a job in retry_wait becomes due again (the reconciler re-enqueues late ones).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    runs: Mapped[list[Run]] = relationship(back_populates="job", order_by="Run.attempt")

    @property
    def job_state(self) -> JobState:
        """Return the state as the enum."""
        return JobState(self.state)


class Run(Base):
    """One attempt of a job: one container, supervised under a fenced lease."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt"),
        CheckConstraint(_one_of("state", [s.value for s in RunState]), name="state"),
        CheckConstraint(_one_of("backend", ("local", "aci", "fake")), name="backend"),
        Index(
            "ix_runs_live_heartbeat",
            "heartbeat_at",
            postgresql_where=text("state IN ('pending', 'launching', 'running')"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    # Deterministic from job and attempt, so a new manager finds the same container.
    container_name: Mapped[str] = mapped_column(String(63), unique=True)
    backend: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=RunState.PENDING.value)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    # Fencing token: bumped on every lease take-over; every write checks it.
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cpu: Mapped[Decimal] = mapped_column(Resource)
    memory_gb: Mapped[Decimal] = mapped_column(Resource)
    is_spot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    launched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    # e.g. "bad_input", "storage", "oom", "killed", "evicted", "image_pull", "lost".
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    billed_seconds: Mapped[float | None]
    # Measured by backends that can (local): for calibrating estimates and sizing.
    peak_rss_mb: Mapped[float | None]
    cpu_seconds: Mapped[float | None]
    cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    log_key: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = _created_at()

    job: Mapped[Job] = relationship(back_populates="runs")

    @property
    def run_state(self) -> RunState:
        """Return the state as the enum."""
        return RunState(self.state)


class JobEvent(Base):
    """Append-only history of a job: state changes, progress, log excerpts.

    The ascending ``id`` is the Server-Sent Events id, so clients resume with
    ``Last-Event-ID``.
    """

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # "state", "progress", "log", "cost", "admission", ...
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _created_at()
