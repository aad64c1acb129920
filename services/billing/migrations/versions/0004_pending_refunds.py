"""Refunds waiting for the link between their charge and an invoice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.create_table(
        "pending_refunds",
        sa.Column("charge_id", sa.String(120), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("payment_intent_id", sa.String(120), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("charge_id", name="pk_pending_refunds"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_pending_refunds_payment_intent_id",
        "pending_refunds",
        ["payment_intent_id"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("pending_refunds", schema=SCHEMA)
