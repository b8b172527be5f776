"""budget reservations and measured usage

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 01:01:15.374072
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column(
            "reserved_usd", sa.Numeric(precision=14, scale=6), server_default="0", nullable=False
        ),
    )
    op.add_column("runs", sa.Column("peak_rss_mb", sa.Double(), nullable=True))
    op.add_column("runs", sa.Column("cpu_seconds", sa.Double(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "cpu_seconds")
    op.drop_column("runs", "peak_rss_mb")
    op.drop_column("jobs", "reserved_usd")
