"""Billing tables (schema ``billing``), as SQLModel tables in billing's own registry.

The ledger is append-only and the truth: every grant, reservation, commit, release,
refund and expiry of credits is one row, unique per (tenant, kind, entry, reference) so
no replay writes anything twice. ``credit_accounts`` holds each balance, changed in the
same transaction as its ledger rows: a reservation is one conditional ``UPDATE`` that
never lets ``available`` go below zero, which is what makes concurrent reservations exact.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from bai_platform.consumer import InboxRecord
from bai_platform.db import TenantOwned, created_now, table_of, table_registry, timestamp
from bai_platform.outbox import OutboxRecord


class BillingTable(SQLModel, registry=table_registry("billing")):
    """The base of billing's tables."""


class CreditAccount(BillingTable, TenantOwned, table=True):
    __tablename__ = "credit_accounts"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    tenant_id: UUID = Field(primary_key=True)
    kind: str = Field(sa_type=String(32), primary_key=True)
    available: int = Field(default=0, sa_type=BigInteger)
    reserved: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = created_now()


class LedgerEntry(BillingTable, TenantOwned, table=True):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "entry", "reference"),
        Index("ix_ledger_entries_tenant", "tenant_id", "id"),
    )

    # Given by PostgreSQL on insert (None on an instance until then).
    id: int = Field(default=None, sa_type=BigInteger, primary_key=True, sa_column_args=[Identity()])
    tenant_id: UUID
    kind: str = Field(sa_type=String(32))
    # grant, reservation, commit, release, refund, expiry
    entry: str = Field(sa_type=String(16))
    # Signed change of the available balance (a commit changes nothing: it settles a hold).
    amount: int = Field(sa_type=BigInteger)
    reference: str = Field(sa_type=String(120))
    created_at: datetime = created_now()


class Reservation(BillingTable, TenantOwned, table=True):
    """Credits held for a job until it commits (charged) or releases them."""

    __tablename__ = "reservations"

    tenant_id: UUID = Field(primary_key=True)
    kind: str = Field(sa_type=String(32), primary_key=True)
    reference: str = Field(sa_type=String(120), primary_key=True)
    amount: int
    charged: int | None = None
    state: str = Field(sa_type=String(16))  # held, committed, released
    created_at: datetime = created_now()
    settled_at: datetime | None = timestamp(nullable=True)


class CreditGrant(BillingTable, TenantOwned, table=True):
    """Credits granted once per source (an invoice, the starter grant), spent soonest-expiring
    first; what is left when ``expires_at`` passes expires (a ledger ``expiry`` entry)."""

    __tablename__ = "credit_grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "reference"),
        Index("ix_credit_grants_spend", "tenant_id", "kind", "expires_at"),
        Index("ix_credit_grants_expiring", "expires_at"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
    )

    # Given by PostgreSQL on insert (None on an instance until then).
    id: int = Field(default=None, sa_type=BigInteger, primary_key=True, sa_column_args=[Identity()])
    tenant_id: UUID
    kind: str = Field(sa_type=String(32))
    reference: str = Field(sa_type=String(120))
    amount: int = Field(sa_type=BigInteger)
    # Not yet spent (held credits count as not spent until their job commits).
    remaining: int = Field(sa_type=BigInteger)
    clawed_back: int = Field(default=0, sa_type=BigInteger)
    invoice_id: str | None = Field(default=None, sa_type=String(120))
    granted_at: datetime = created_now()
    expires_at: datetime | None = timestamp(nullable=True)
    expired_at: datetime | None = timestamp(nullable=True)


class UsageAlert(BillingTable, TenantOwned, table=True):
    """80 % and 100 % of a kind's credits used: announced once per grant period."""

    __tablename__ = "usage_alerts"

    tenant_id: UUID = Field(primary_key=True)
    kind: str = Field(sa_type=String(32), primary_key=True)
    threshold: int = Field(primary_key=True)
    period: str = Field(sa_type=String(120), primary_key=True)
    created_at: datetime = created_now()


class Customer(BillingTable, TenantOwned, table=True):
    """The Stripe customer of a workspace."""

    __tablename__ = "customers"

    tenant_id: UUID = Field(primary_key=True)
    stripe_customer_id: str = Field(sa_type=String(120), unique=True)
    created_at: datetime = created_now()


class Subscription(BillingTable, TenantOwned, table=True):
    """A workspace's subscription as Stripe last described it (order-safe: an event older
    than ``event_created`` never overwrites a newer one)."""

    __tablename__ = "subscriptions"

    stripe_subscription_id: str = Field(sa_type=String(120), primary_key=True)
    tenant_id: UUID = Field(index=True)
    stripe_customer_id: str = Field(sa_type=String(120))
    plan: str | None = Field(default=None, sa_type=String(32))
    price_id: str | None = Field(default=None, sa_type=String(120))
    status: str = Field(sa_type=String(32))
    cancel_at_period_end: bool = False
    current_period_start: datetime | None = timestamp(nullable=True)
    current_period_end: datetime | None = timestamp(nullable=True)
    # The Stripe ``created`` time of the event whose state this row holds.
    event_created: int = Field(sa_type=BigInteger)
    updated_at: datetime = created_now()


class Invoice(BillingTable, TenantOwned, table=True):
    """A paid invoice: what it granted, and what refunds took back."""

    __tablename__ = "invoices"

    stripe_invoice_id: str = Field(sa_type=String(120), primary_key=True)
    tenant_id: UUID = Field(index=True)
    stripe_subscription_id: str | None = Field(default=None, sa_type=String(120))
    plan: str | None = Field(default=None, sa_type=String(32))
    amount_paid: int = Field(sa_type=BigInteger)
    currency: str = Field(sa_type=String(8))
    # How its payment is named in charge events (either may be absent).
    charge_id: str | None = Field(default=None, sa_type=String(120), index=True)
    payment_intent_id: str | None = Field(default=None, sa_type=String(120), index=True)
    period_end: datetime | None = timestamp(nullable=True)
    amount_refunded: int = Field(default=0, sa_type=BigInteger)
    paid_at: datetime = created_now()


class PendingRefund(BillingTable, TenantOwned, table=True):
    """A refunded charge not yet linked to its invoice (since API version 2025-03-31 a charge
    does not name its invoice: ``invoice_payment.paid`` links them, in either order). Applied
    and removed once the link is known."""

    __tablename__ = "pending_refunds"

    charge_id: str = Field(sa_type=String(120), primary_key=True)
    tenant_id: UUID
    payment_intent_id: str | None = Field(default=None, sa_type=String(120), index=True)
    amount: int = Field(sa_type=BigInteger)
    amount_refunded: int = Field(sa_type=BigInteger)
    received_at: datetime = created_now()


class StripeEvent(BillingTable, table=True):
    """Every verified Stripe event, stored by id before it is acknowledged; the worker
    processes it afterwards (``processed_at``), in Stripe's ``created`` order."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_pending", "processed_at", "created"),)

    id: str = Field(sa_type=String(120), primary_key=True)
    type: str = Field(sa_type=String(120))
    created: int = Field(sa_type=BigInteger)
    livemode: bool
    payload: dict[str, Any] = Field(sa_type=JSONB)
    received_at: datetime = created_now()
    deliveries: int = 1
    # processed, ignored (a type billing does not handle), waiting (for what it needs),
    # retrying (its handler failed) or failed (gave up: see stripe_events).
    outcome: str | None = Field(default=None, sa_type=String(16))
    processed_at: datetime | None = timestamp(nullable=True)
    attempts: int = 0
    next_attempt_at: datetime = created_now()
    last_error: str | None = Field(default=None, sa_type=Text)


class Outbox(BillingTable, OutboxRecord, table=True):
    """Events of this service waiting to be published (``bai_platform.outbox``)."""


class Inbox(BillingTable, InboxRecord, table=True):
    """Events this service's consumers have applied (``bai_platform.consumer``)."""


outbox = table_of(Outbox)
inbox = table_of(Inbox)
