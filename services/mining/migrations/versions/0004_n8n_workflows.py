"""n8n sources: the tenants' mining workflows and the dispatch state of n8n jobs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "mining"
JOBS = "extraction_jobs"


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("webhook_url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("accept_secret_header", sa.Boolean(), nullable=False),
        sa.Column("deadline_seconds", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_workflows"),
        schema=SCHEMA,
    )
    columns: list[sa.Column] = [  # type: ignore[type-arg]  # columns of several types
        sa.Column("source_type", sa.String(16), nullable=False, server_default="website"),
        sa.Column("dispatch", sa.String(16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "pages_accepted",
            postgresql.ARRAY(sa.Integer()),
            nullable=False,
            server_default="{}",
        ),
        sa.Column("final_page", sa.Integer(), nullable=True),
    ]
    for column in columns:
        op.add_column(JOBS, column, schema=SCHEMA)
    op.create_index(
        "ix_extraction_jobs_dispatch", JOBS, ["dispatch", "next_attempt_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_extraction_jobs_dispatch", JOBS, schema=SCHEMA)
    for name in (
        "final_page",
        "pages_accepted",
        "deadline_at",
        "dispatched_at",
        "next_attempt_at",
        "attempts",
        "dispatch",
        "source_type",
    ):
        op.drop_column(JOBS, name, schema=SCHEMA)
    op.drop_table("workflows", schema=SCHEMA)
