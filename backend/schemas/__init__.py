"""Request and response bodies: pydantic models, the single source of the OpenAPI schemas.

Requests are validated by these models (``requests``); responses are serialised through
them (``accounts``, ``media``, ``jobs``, ``batches``, ``ops``, ``problem``), so what the
API answers is what the OpenAPI document says. Response models that describe a domain
row read it directly (``JobOut.model_validate(job)``). Import from this package:
``from backend.schemas import JobOut``.
"""

from __future__ import annotations

from backend.schemas.accounts import SessionOut, TokenCreated, TokenList, TokenOut, UserOut
from backend.schemas.batches import (
    BatchList,
    BatchOut,
    PlanGroupOut,
    PlanOut,
    PriceTableOut,
    ReportPage,
    ReportRowOut,
    RetryOut,
    RowResultList,
    RowResultOut,
)
from backend.schemas.jobs import EventList, EventOut, JobOut, JobPage
from backend.schemas.media import TemplateList, TemplateOut, UploadList, UploadOut
from backend.schemas.ops import BatchSpendOut, Status, SummaryOut
from backend.schemas.problem import Problem
from backend.schemas.requests import (
    BatchCreate,
    BatchRowIn,
    BatchRowsIn,
    Body,
    BudgetSet,
    Credentials,
    Crop,
    JobCreate,
    PlanGroupIn,
    PlanIn,
    TokenCreate,
)

__all__ = [
    "BatchCreate",
    "BatchList",
    "BatchOut",
    "BatchRowIn",
    "BatchRowsIn",
    "BatchSpendOut",
    "Body",
    "BudgetSet",
    "Credentials",
    "Crop",
    "EventList",
    "EventOut",
    "JobCreate",
    "JobOut",
    "JobPage",
    "PlanGroupIn",
    "PlanGroupOut",
    "PlanIn",
    "PlanOut",
    "PriceTableOut",
    "Problem",
    "ReportPage",
    "ReportRowOut",
    "RetryOut",
    "RowResultList",
    "RowResultOut",
    "SessionOut",
    "Status",
    "SummaryOut",
    "TemplateList",
    "TemplateOut",
    "TokenCreate",
    "TokenCreated",
    "TokenList",
    "TokenOut",
    "UploadList",
    "UploadOut",
    "UserOut",
]
