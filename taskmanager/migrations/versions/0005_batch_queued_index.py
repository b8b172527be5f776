"""an index of each batch's queued jobs in submission order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 04:00:00

Every attempt that ends wakes its batch's oldest queued jobs; without this index that
query sorted every queued job of the batch (0.7 ms at 2,000 rows, linear beyond).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_batch_queued",
        "jobs",
        ["batch_id", "created_at", "id"],
        postgresql_where=sa.text("state = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_batch_queued", table_name="jobs")
