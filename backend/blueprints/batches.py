"""Batches (operators only): create, list and inspect."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response

from backend.auth import operator_required, require_caller
from backend.bodies import answer, parse_body
from backend.schemas import BatchCreate, BatchList, BatchOut
from backend.services import services
from taskmanager.batches import BatchRequest, create_batch, get_batch, list_batches

bp = Blueprint("batches", __name__, url_prefix="/api/v1")


@bp.post("/batches")
@operator_required
def create() -> Response:
    """Create a batch with a budget and a concurrency cap."""
    body = parse_body(BatchCreate)
    batch = create_batch(
        services().sessions, services().settings,
        BatchRequest(
            owner_id=require_caller().id, name=body.name, budget_usd=body.budget_usd,
            max_concurrent=body.max_concurrent, cpu=body.cpu, memory_gb=body.memory_gb,
            max_runtime_s=body.max_runtime_s, is_spot=body.is_spot,
        ),
    )  # fmt: skip
    response = answer(BatchOut.of(batch), 201)
    response.headers["Location"] = f"/api/v1/batches/{batch.id}"
    return response


@bp.get("/batches")
@operator_required
def index() -> Response:
    """List every batch, newest first."""
    found = list_batches(services().sessions)
    return answer(BatchList(items=[BatchOut.of(b) for b in found]))


@bp.get("/batches/<uuid:batch_id>")
@operator_required
def show(batch_id: uuid.UUID) -> Response:
    """Return a batch with its money and its jobs counted by state."""
    view = get_batch(services().sessions, batch_id)
    return answer(BatchOut.of(view.batch, view.jobs_by_state))
