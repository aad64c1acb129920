"""Gateway worker: relays the outbox (tenant events) and follows billing's plan changes."""

from bai_contracts import SubscriptionChanged
from bai_platform.consumer import Subscription
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerSpec
from gateway.events import on_subscription_changed
from gateway.models import inbox, outbox


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    plans = Subscription(
        durable="gateway-subscription-changed",
        stream="BILLING",
        subjects=(SubscriptionChanged.subject,),
        handler=on_subscription_changed,
        description="the gateway follows each tenant's plan for rate-limit tiers",
    )
    return WorkerSpec(outbox=outbox, inbox=inbox, subscriptions=[plans])
