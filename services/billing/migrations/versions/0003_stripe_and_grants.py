"""Stripe customers, subscriptions, invoices and stored events; grants that expire; usage
alerts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]  # a column of any type
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _when(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(120), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("clawed_back", sa.BigInteger(), nullable=False),
        sa.Column("invoice_id", sa.String(120), nullable=True),
        _now("granted_at"),
        _when("expires_at"),
        _when("expired_at"),
        sa.PrimaryKeyConstraint("id", name="pk_credit_grants"),
        sa.UniqueConstraint(
            "tenant_id", "kind", "reference", name="uq_credit_grants_tenant_id_kind_reference"
        ),
        sa.CheckConstraint("remaining >= 0", name="ck_credit_grants_remaining_not_negative"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_credit_grants_spend",
        "credit_grants",
        ["tenant_id", "kind", "expires_at"],
        schema=SCHEMA,
    )
    op.create_index("ix_credit_grants_expiring", "credit_grants", ["expires_at"], schema=SCHEMA)
    # Grants made before this table existed (starter grants) become grants that never expire.
    op.execute(
        """INSERT INTO billing.credit_grants
              (tenant_id, kind, reference, amount, remaining, clawed_back, granted_at)
            SELECT tenant_id, kind, reference, amount, amount, 0, created_at
              FROM billing.ledger_entries WHERE entry = 'grant'"""
    )
    op.create_table(
        "usage_alerts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(120), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "threshold", "period", name="pk_usage_alerts"),
        schema=SCHEMA,
    )
    op.create_table(
        "customers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(120), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_customers"),
        sa.UniqueConstraint("stripe_customer_id", name="uq_customers_stripe_customer_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "subscriptions",
        sa.Column("stripe_subscription_id", sa.String(120), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(120), nullable=False),
        sa.Column("plan", sa.String(32), nullable=True),
        sa.Column("price_id", sa.String(120), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        _when("current_period_start"),
        _when("current_period_end"),
        sa.Column("event_created", sa.BigInteger(), nullable=False),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("stripe_subscription_id", name="pk_subscriptions"),
        schema=SCHEMA,
    )
    op.create_index("ix_subscriptions_tenant_id", "subscriptions", ["tenant_id"], schema=SCHEMA)
    op.create_table(
        "invoices",
        sa.Column("stripe_invoice_id", sa.String(120), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(120), nullable=True),
        sa.Column("plan", sa.String(32), nullable=True),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("charge_id", sa.String(120), nullable=True),
        sa.Column("payment_intent_id", sa.String(120), nullable=True),
        _when("period_end"),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        _now("paid_at"),
        sa.PrimaryKeyConstraint("stripe_invoice_id", name="pk_invoices"),
        schema=SCHEMA,
    )
    op.create_index("ix_invoices_tenant_id", "invoices", ["tenant_id"], schema=SCHEMA)
    op.create_index("ix_invoices_charge_id", "invoices", ["charge_id"], schema=SCHEMA)
    op.create_index(
        "ix_invoices_payment_intent_id", "invoices", ["payment_intent_id"], schema=SCHEMA
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("type", sa.String(120), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        _now("received_at"),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        _when("processed_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _now("next_attempt_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stripe_events"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_stripe_events_pending", "stripe_events", ["processed_at", "created"], schema=SCHEMA
    )


def downgrade() -> None:
    for table in (
        "stripe_events",
        "invoices",
        "subscriptions",
        "customers",
        "usage_alerts",
        "credit_grants",
    ):
        op.drop_table(table, schema=SCHEMA)
