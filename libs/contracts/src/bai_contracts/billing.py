"""Facts billing publishes."""

from typing import ClassVar

from bai_contracts._base import EventContract


class SubscriptionChanged(EventContract):
    """A tenant's subscription changed plan or status (the gateway follows it for limits)."""

    subject: ClassVar[str] = "bai.billing.subscription.changed.v1"

    plan: str
    status: str
    # Stripe's event time for ordering; a change older than the one applied is ignored.
    changed_at: float
