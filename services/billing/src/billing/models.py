"""Billing tables (schema ``billing``).

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
    Boolean,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bai_platform.consumer import inbox_table
from bai_platform.db import TenantOwned, make_metadata
from bai_platform.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata("billing")


class CreditAccount(TenantOwned, Base):
    __tablename__ = "credit_accounts"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class LedgerEntry(TenantOwned, Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "entry", "reference"),
        Index("ix_ledger_entries_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    # grant, reservation, commit, release, refund, expiry
    entry: Mapped[str] = mapped_column(String(16), nullable=False)
    # Signed change of the available balance (a commit changes nothing: it settles a hold).
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reference: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Reservation(TenantOwned, Base):
    """Credits held for a job until it commits (charged) or releases them."""

    __tablename__ = "reservations"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    reference: Mapped[str] = mapped_column(String(120), primary_key=True)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    charged: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # held, committed, released
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CreditGrant(TenantOwned, Base):
    """Credits granted once per source (an invoice, the starter grant), spent soonest-expiring
    first; what is left when ``expires_at`` passes expires (a ledger ``expiry`` entry)."""

    __tablename__ = "credit_grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "reference"),
        Index("ix_credit_grants_spend", "tenant_id", "kind", "expires_at"),
        Index("ix_credit_grants_expiring", "expires_at"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    reference: Mapped[str] = mapped_column(String(120), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Not yet spent (held credits count as not spent until their job commits).
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)
    clawed_back: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    invoice_id: Mapped[str | None] = mapped_column(String(120))
    granted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UsageAlert(TenantOwned, Base):
    """80 % and 100 % of a kind's credits used: announced once per grant period."""

    __tablename__ = "usage_alerts"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    threshold: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(120), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Customer(TenantOwned, Base):
    """The Stripe customer of a workspace."""

    __tablename__ = "customers"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(120), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Subscription(TenantOwned, Base):
    """A workspace's subscription as Stripe last described it (order-safe: an event older
    than ``event_created`` never overwrites a newer one)."""

    __tablename__ = "subscriptions"

    stripe_subscription_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False, index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(120), nullable=False)
    plan: Mapped[str | None] = mapped_column(String(32))
    price_id: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The Stripe ``created`` time of the event whose state this row holds.
    event_created: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Invoice(TenantOwned, Base):
    """A paid invoice: what it granted, and what refunds took back."""

    __tablename__ = "invoices"

    stripe_invoice_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False, index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(120))
    plan: Mapped[str | None] = mapped_column(String(32))
    amount_paid: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(8), nullable=False)
    # How its payment is named in charge events (either may be absent).
    charge_id: Mapped[str | None] = mapped_column(String(120), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(120), index=True)
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    amount_refunded: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    paid_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class PendingRefund(TenantOwned, Base):
    """A refunded charge not yet linked to its invoice (since API version 2025-03-31 a charge
    does not name its invoice: ``invoice_payment.paid`` links them, in either order). Applied
    and removed once the link is known."""

    __tablename__ = "pending_refunds"

    charge_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    payment_intent_id: Mapped[str | None] = mapped_column(String(120), index=True)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class StripeEvent(Base):
    """Every verified Stripe event, stored by id before it is acknowledged; the worker
    processes it afterwards (``processed_at``), in Stripe's ``created`` order."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_pending", "processed_at", "created"),)

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    type: Mapped[str] = mapped_column(String(120), nullable=False)
    created: Mapped[int] = mapped_column(BigInteger, nullable=False)
    livemode: Mapped[bool] = mapped_column(Boolean, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    deliveries: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # processed, ignored (a type billing does not handle), waiting (for what it needs),
    # retrying (its handler failed) or failed (gave up: see stripe_events).
    outcome: Mapped[str | None] = mapped_column(String(16))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(Text)


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
