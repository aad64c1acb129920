"""Credit accounts, the append-only ledger and reservations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]  # a column of any type
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "credit_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", name="pk_credit_accounts"),
        sa.CheckConstraint("available >= 0", name="ck_credit_accounts_available_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="ck_credit_accounts_reserved_not_negative"),
        schema=SCHEMA,
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("entry", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(120), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint(
            "tenant_id",
            "kind",
            "entry",
            "reference",
            name="uq_ledger_entries_tenant_id_kind_entry_reference",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_ledger_entries_tenant", "ledger_entries", ["tenant_id", "id"], schema=SCHEMA
    )
    op.create_table(
        "reservations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(120), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("charged", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        _now("created_at"),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "reference", name="pk_reservations"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("reservations", schema=SCHEMA)
    op.drop_table("ledger_entries", schema=SCHEMA)
    op.drop_table("credit_accounts", schema=SCHEMA)
