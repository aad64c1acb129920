"""Facts billing publishes."""

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from bai_contracts._base import EventContract


class SubscriptionChanged(EventContract):
    """A tenant's subscription changed plan or status (the gateway follows it for limits)."""

    subject: ClassVar[str] = "bai.billing.subscription.changed.v1"

    plan: str
    status: str
    # Stripe's event time for ordering; a change older than the one applied is ignored.
    changed_at: float
    # Members (and open invitations) the plan in force allows; None: no limit.
    seats: int | None = None


class CreditsThresholdReached(EventContract):
    """A credit kind reached 80 % or 100 % of what the workspace was granted (once per
    grant period), so people can top up or slow down before work is refused."""

    subject: ClassVar[str] = "bai.billing.credits.threshold_reached.v1"

    kind: str
    threshold: Literal[80, 100]
    granted: int
    available: int


NoticeKind = Literal[
    "payment_failed",
    "payment_action_required",
    "trial_will_end",
    "invoice_upcoming",
    "charge_disputed",
    "charge_refunded",
    "credits_granted",
]


class BillingNotice(EventContract):
    """Something about the workspace's billing a person should see: a payment that failed
    or needs action, a trial ending, an upcoming invoice, a dispute, a refund."""

    subject: ClassVar[str] = "bai.billing.notice.v1"

    notice: NoticeKind
    message: str
    reference: str | None = None


# ---- credits: questions creator and mining ask billing (NATS micro request/reply) -------
CREDIT_KINDS = ("posts", "extraction_pages", "chat_messages")


def quota_subject(operation: str) -> str:
    """Where billing answers ``reserve``, ``commit``, ``release`` and ``balance``."""
    return f"bai.rpc.billing.quota.{operation}"


class ReserveCredits(BaseModel):
    """Hold ``amount`` credits of ``kind`` for ``reference`` (a job id); idempotent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: UUID
    kind: Literal["posts", "extraction_pages", "chat_messages"]
    amount: int = Field(ge=1, le=1_000_000)
    reference: str = Field(min_length=1, max_length=120)


class CommitCredits(BaseModel):
    """Charge what ``reference`` used (all it holds unless ``amount`` says less); the rest
    goes back. Idempotent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: UUID
    kind: Literal["posts", "extraction_pages", "chat_messages"]
    reference: str = Field(min_length=1, max_length=120)
    amount: int | None = Field(default=None, ge=0)


class ReleaseCredits(BaseModel):
    """Give back everything ``reference`` holds. Idempotent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: UUID
    kind: Literal["posts", "extraction_pages", "chat_messages"]
    reference: str = Field(min_length=1, max_length=120)


class BalanceQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: UUID


class QuotaAnswer(BaseModel):
    """Billing's answer: ``ok`` or a ``code`` and ``reason``; the balances after it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: bool
    code: str | None = None
    reason: str | None = None
    balances: dict[str, int] = {}
