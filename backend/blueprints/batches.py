"""Batches (operators only): plan, create, list, inspect, rows, budget, cancel, retry, report."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, request

from backend.auth import operator_required, require_caller
from backend.blueprints.jobs import decode_cursor, encode_cursor
from backend.bodies import answer, parse_body
from backend.problems import validation_problem_for
from backend.schemas import (
    BatchCreate,
    BatchList,
    BatchOut,
    BatchRowsIn,
    BudgetSet,
    PlanGroupOut,
    PlanIn,
    PlanOut,
    PriceTableOut,
    ReportPage,
    ReportRowOut,
    RetryOut,
    RowResultList,
    RowResultOut,
)
from backend.services import services
from taskmanager.batches.jobs import BatchRow, cancel_batch, report_rows, retry_failed, submit_rows
from taskmanager.batches.service import (
    BatchRequest,
    create_batch,
    get_batch,
    list_batches,
    set_budget,
)
from taskmanager.cost import GroupEstimate, PlanEstimate, PlanGroup, estimate_plan
from taskmanager.errors import InvalidRequest
from taskmanager.limits import is_decimal_number

bp = Blueprint("batches", __name__, url_prefix="/api/v1")
MAX_REPORT_PAGE = 5000


@bp.post("/batches")
@operator_required
def create() -> Response:
    """Create a batch with a budget and a concurrency cap."""
    body = parse_body(BatchCreate)
    batch = create_batch(
        services().sessions,
        services().settings,
        BatchRequest(
            owner_id=require_caller().id,
            name=body.name,
            budget_usd=body.budget_usd,
            max_concurrent=body.max_concurrent,
            cpu=body.cpu,
            memory_gb=body.memory_gb,
            max_runtime_s=body.max_runtime_s,
            is_spot=body.is_spot,
        ),
    )
    response = answer(BatchOut.model_validate(batch), 201)
    response.headers["Location"] = f"/api/v1/batches/{batch.id}"
    return response


@bp.get("/batches")
@operator_required
def index() -> Response:
    """List every batch, newest first; ``?name=`` finds the caller's batch of that name."""
    name = request.args.get("name")
    if name is not None:
        if not 1 <= len(name.strip()) <= 200:
            return validation_problem_for("name", "must be 1 to 200 characters")
        found = list_batches(services().sessions, owner_id=require_caller().id, name=name)
    else:
        found = list_batches(services().sessions)
    return answer(BatchList(items=[BatchOut.model_validate(b) for b in found]))


@bp.get("/batches/<uuid:batch_id>")
@operator_required
def show(batch_id: uuid.UUID) -> Response:
    """Return a batch with its money and its jobs counted by state."""
    view = get_batch(services().sessions, batch_id)
    return answer(BatchOut.from_view(view))


@bp.post("/batches/plan")
@operator_required
def plan() -> Response:
    """Estimate a batch (container time, cost both ways, wall time); create nothing."""
    body = parse_body(PlanIn, is_rows=True)
    settings = services().settings
    groups = [
        PlanGroup(
            template_name=g.template,
            count=g.count,
            cpu=g.cpu or body.cpu or settings.default_cpu,
            memory_gb=g.memory_gb or body.memory_gb or settings.default_memory_gb,
            max_runtime_s=g.max_runtime_s or body.max_runtime_s or settings.default_max_runtime_s,
        )
        for g in body.groups
    ]
    with services().sessions() as session:
        try:
            estimate = estimate_plan(session, settings, groups, body.max_concurrent)
        except LookupError as exc:
            index = next(i for i, g in enumerate(groups) if g.template_name == exc.args[0])
            raise InvalidRequest(
                f"groups[{index}].template", f"no template named {exc.args[0]!r}"
            ) from exc
    return answer(_plan_out(estimate))


def _plan_out(estimate: PlanEstimate) -> PlanOut:
    models = {g.model.is_calibrated for g in estimate.groups}
    prices = estimate.prices
    return PlanOut(
        jobs=estimate.jobs,
        container_seconds=round(estimate.container_seconds, 3),
        cost_usd=estimate.cost_usd,
        spot_cost_usd=estimate.spot_cost_usd,
        max_cost_usd=estimate.max_cost_usd,
        wall_seconds=round(estimate.wall_seconds, 3),
        max_concurrent=estimate.max_concurrent,
        model="mixed" if len(models) > 1 else ("calibrated" if True in models else "default"),
        prices=PriceTableOut(
            vcpu_hour_usd=prices.vcpu_hour,
            gb_hour_usd=prices.gb_hour,
            spot_factor=prices.spot_factor,
        ),
        groups=[_group_out(g) for g in estimate.groups],
    )


def _group_out(estimate: GroupEstimate) -> PlanGroupOut:
    group, model = estimate.group, estimate.model
    return PlanGroupOut(
        template=group.template_name,
        count=group.count,
        cpu=group.cpu,
        memory_gb=group.memory_gb,
        max_runtime_s=group.max_runtime_s,
        seconds_per_job=round(estimate.seconds_per_job, 3),
        model="calibrated" if model.is_calibrated else "default",
        sample_runs=model.sample_runs,
        vcpu_seconds_per_video_second=round(model.vcpu_seconds_per_video_second, 4),
        cost_usd=estimate.cost_usd,
        spot_cost_usd=estimate.spot_cost_usd,
        max_cost_usd=estimate.max_cost_usd,
    )


@bp.post("/batches/<uuid:batch_id>/jobs")
@operator_required
def add_rows(batch_id: uuid.UUID) -> Response:
    """Create the rows' jobs; a row already created returns its job (resumable)."""
    body = parse_body(BatchRowsIn, is_rows=True)
    rows = [
        BatchRow(
            row_id=r.row_id,
            template=r.template,
            upload_id=r.upload_id,
            crop=(r.crop.x, r.crop.y, r.crop.width, r.crop.height) if r.crop else None,
            cpu=r.cpu,
            memory_gb=r.memory_gb,
            max_runtime_s=r.max_runtime_s,
            params={"fake": r.fake} if r.fake is not None else {},
        )
        for r in body.rows
    ]
    results = submit_rows(
        services().sessions,
        services().enqueuer,
        services().settings,
        batch_id,
        require_caller().id,
        rows,
    )
    items = [
        RowResultOut(row_id=r.row_id, job_id=r.job_id, state=r.state, is_created=r.is_created)
        for r in results
    ]
    return answer(RowResultList(items=items))


@bp.post("/batches/<uuid:batch_id>/budget")
@operator_required
def budget(batch_id: uuid.UUID) -> Response:
    """Set the budget; a batch paused by its budget resumes and its jobs wake."""
    body = parse_body(BudgetSet)
    view = set_budget(services().sessions, services().enqueuer, batch_id, body.budget_usd)
    return answer(BatchOut.from_view(view))


@bp.post("/batches/<uuid:batch_id>/cancel")
@operator_required
def cancel(batch_id: uuid.UUID) -> Response:
    """Cancel the batch: nothing more starts, waiting jobs are cancelled, running ones stop."""
    view = cancel_batch(services().sessions, batch_id)
    return answer(BatchOut.from_view(view), 202)


@bp.post("/batches/<uuid:batch_id>/retry-failed")
@operator_required
def retry(batch_id: uuid.UUID) -> Response:
    """Queue the batch's failed and timed-out jobs again."""
    count, view = retry_failed(services().sessions, services().enqueuer, batch_id)
    return answer(RetryOut(retried=count, batch=BatchOut.from_view(view)), 202)


@bp.get("/batches/<uuid:batch_id>/report")
@operator_required
def report(batch_id: uuid.UUID) -> Response:
    """One row per job in submission order: state, attempts, runtime, cost, output, error."""
    after = None
    cursor = request.args.get("cursor")
    if cursor is not None:
        after = decode_cursor(cursor)
        if after is None:
            return validation_problem_for("cursor", "is not a cursor this API handed out")
    limit_text = request.args.get("limit", "1000")
    if not is_decimal_number(limit_text) or not 1 <= int(limit_text) <= MAX_REPORT_PAGE:
        return validation_problem_for("limit", f"must be an integer from 1 to {MAX_REPORT_PAGE}")
    limit = int(limit_text)
    rows = report_rows(services().sessions, batch_id, after=after, limit=limit)
    items = [
        ReportRowOut(
            row_id=r.row_id,
            job_id=r.job_id,
            state=r.state,
            attempts=r.attempts,
            runtime_s=round(r.runtime_s, 3),
            cost_usd=r.cost_usd,
            output_url=f"/api/v1/jobs/{r.job_id}/result" if r.has_output else None,
            error_code=r.error_code,
            error_message=r.error_message,
        )
        for r in rows
    ]
    next_cursor = (
        encode_cursor(rows[-1].created_at, rows[-1].job_id) if len(rows) == limit else None
    )
    return answer(ReportPage(items=items, next_cursor=next_cursor))
