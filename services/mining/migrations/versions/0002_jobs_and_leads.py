"""Extraction jobs, leads, and stored answers of creates carrying Idempotency-Key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from bai_platform.migrations import create_idempotency_table

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "mining"


def _when(name: str, *, now: bool = False) -> sa.Column:  # type: ignore[type-arg]  # any type
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=not now, server_default=default)


def upgrade() -> None:
    op.create_table(
        "extraction_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("source", postgresql.JSONB(), nullable=False),
        sa.Column("limits", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.Column("items_found", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("problems", postgresql.JSONB(), nullable=False),
        sa.Column("credits", sa.String(16), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _when("created_at", now=True),
        _when("started_at"),
        _when("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_extraction_jobs"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_extraction_jobs_tenant_created",
        "extraction_jobs",
        ["tenant_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_extraction_jobs_queue", "extraction_jobs", ["state", "created_at"], schema=SCHEMA
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("organisation", sa.String(300), nullable=True),
        sa.Column("domain", sa.String(300), nullable=True),
        sa.Column("emails", postgresql.ARRAY(sa.String(320)), nullable=False),
        sa.Column("phones", postgresql.ARRAY(sa.String(40)), nullable=False),
        sa.Column("socials", postgresql.ARRAY(sa.String(500)), nullable=False),
        sa.Column("addresses", postgresql.ARRAY(sa.String(500)), nullable=False),
        sa.Column("pages", postgresql.ARRAY(sa.String(2000)), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        _when("created_at", now=True),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
        sa.UniqueConstraint("job_id", "key", name="uq_leads_job_id_key"),
        schema=SCHEMA,
    )
    op.create_index("ix_leads_job", "leads", ["job_id", "id"], schema=SCHEMA)
    create_idempotency_table(SCHEMA)


def downgrade() -> None:
    op.drop_table("idempotency_keys", schema=SCHEMA)
    op.drop_table("leads", schema=SCHEMA)
    op.drop_table("extraction_jobs", schema=SCHEMA)
