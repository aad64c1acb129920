"""Billing API shapes."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class BalanceRead(BaseModel):
    balances: dict[str, int]
    # The plan in force (starter, growth, agency), or null before any subscription.
    plan: str | None
    subscription_status: str


class KindUsage(BaseModel):
    granted: int
    used: int
    held: int
    available: int
    percent_used: float
    next_expiry_at: datetime | None
    next_expiry_amount: int


class UsageRead(BaseModel):
    kinds: dict[str, KindUsage]


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    entry: str
    amount: int
    reference: str
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerEntryRead]
    next_before: int | None


class PlanRead(BaseModel):
    id: str
    name: str
    monthly_credits: dict[str, int]
    seats: int


class SubscriptionRead(BaseModel):
    plan: str | None
    # Stripe's status (active, trialing, past_due, canceled, ...), or "none".
    status: str
    cancel_at_period_end: bool = False
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None


class CheckoutCreate(BaseModel):
    plan: str = Field(min_length=1, max_length=32)


class CheckoutRead(BaseModel):
    id: str
    url: str
    plan: str


class PortalRead(BaseModel):
    url: str
