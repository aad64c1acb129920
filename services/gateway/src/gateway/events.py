"""The gateway's handlers for other services' events; each runs in the inbox transaction."""

from uuid import UUID

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import SubscriptionChanged
from bai_platform.envelope import Envelope
from gateway.models import Tenant

# Statuses in which the paid plan's limits apply; otherwise the default plan's.
PLAN_IN_FORCE = frozenset({"active", "trialing", "past_due"})


async def on_subscription_changed(session: AsyncSession, envelope: Envelope) -> None:
    """Follow the tenant's plan for rate-limit tiers and seats; an older change never wins."""
    event: SubscriptionChanged = envelope.payload(SubscriptionChanged)
    if envelope.tenantid is None:
        raise ValueError("a subscription change names its tenant")
    plan = event.plan if event.status in PLAN_IN_FORCE else None
    await session.execute(
        update(Tenant)
        .where(
            col(Tenant.id) == UUID(envelope.tenantid),
            or_(
                col(Tenant.plan_changed_at).is_(None),
                col(Tenant.plan_changed_at) < event.changed_at,
            ),
        )
        .values(
            plan=plan,
            plan_changed_at=event.changed_at,
            seat_limit=event.seats if plan is not None else None,
        )
    )
