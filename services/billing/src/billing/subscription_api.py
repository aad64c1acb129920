"""Subscription routes: the plans, the workspace's subscription, and the ways to change it
through Stripe (Checkout to subscribe, the customer portal to manage, cancel at period end).

The Stripe client is held by the app's lifespan (``state.py``).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, status

from bai_platform.app_state import held
from bai_platform.db import ReadSession, Session
from bai_platform.identity import Admin, CurrentIdentity
from billing.clients.stripe import StripeBilling, current_subscription
from billing.models import Subscription
from billing.schemas import CheckoutCreate, CheckoutRead, PlanRead, PortalRead, SubscriptionRead

router = APIRouter(prefix="/v1/billing", tags=["billing"])


async def _billing(request: Request) -> StripeBilling:  # async: no thread pool hand-off
    return held(request, StripeBilling)


Billing = Annotated[StripeBilling, Depends(_billing)]
# The client's own key for a retried request; Stripe accepts keys up to 255 characters.
ClientKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]


def _subscription_read(row: Subscription | None) -> SubscriptionRead:
    if row is None:
        return SubscriptionRead(plan=None, status="none")
    return SubscriptionRead(
        plan=row.plan,
        status=row.status,
        cancel_at_period_end=row.cancel_at_period_end,
        current_period_start=row.current_period_start,
        current_period_end=row.current_period_end,
    )


# ---- routes -------------------------------------------------------------------------------
@router.get("/plans")
async def plans(identity: CurrentIdentity, billing: Billing) -> list[PlanRead]:
    """The plans a workspace can subscribe to."""
    return [
        PlanRead(id=p.id, name=p.name, monthly_credits=p.monthly_credits, seats=p.seats)
        for p in billing.catalogue
    ]


@router.get("/subscription")
async def subscription(identity: CurrentIdentity, session: ReadSession) -> SubscriptionRead:
    """The workspace's subscription, or status ``none``."""
    return _subscription_read(await current_subscription(session, tenant_id=identity.tenant_id))


@router.post("/checkout", status_code=status.HTTP_201_CREATED)
async def checkout(
    body: CheckoutCreate,
    identity: Admin,
    session: Session,
    billing: Billing,
    idempotency_key: ClientKey = None,
) -> CheckoutRead:
    """A Stripe Checkout page selling a plan to the workspace (owners and admins)."""
    created = await billing.checkout(
        session, identity=identity, plan_id=body.plan, client_key=idempotency_key
    )
    return CheckoutRead(id=created.id, url=created.url, plan=created.plan)


@router.post("/portal", status_code=status.HTTP_201_CREATED)
async def portal(
    identity: Admin, session: Session, billing: Billing, idempotency_key: ClientKey = None
) -> PortalRead:
    """A Stripe customer portal page for the workspace's billing (owners and admins)."""
    url = await billing.portal(session, identity=identity, client_key=idempotency_key)
    return PortalRead(url=url)


@router.post("/subscription/cancel")
async def cancel(
    identity: Admin, session: Session, billing: Billing, idempotency_key: ClientKey = None
) -> SubscriptionRead:
    """Cancel the subscription at the end of the period paid for (owners and admins)."""
    row = await billing.cancel(session, identity=identity, client_key=idempotency_key)
    return _subscription_read(row)
