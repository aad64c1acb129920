"""Subscriptions and checkout: the plan in force per workspace, and who the customer is.

A subscription row keeps the ``created`` time of the event it came from; an older event
never overwrites a newer one, and a ``deleted`` is final. A change of the plan in force
tells the gateway (``bai.billing.subscription.changed.v1``).
"""

from typing import Any
from uuid import UUID

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import SubscriptionChanged
from bai_platform.envelope import new_event
from bai_platform.outbox import emit
from billing.models import Subscription, outbox
from billing.service.stripe_events.common import (
    Rules,
    field,
    id_of,
    link_customer,
    now,
    object_of,
    own_id,
    price_of,
    tenant_of,
    timestamp,
    uuid_of,
)

IN_FORCE = ("active", "trialing", "past_due")
FINAL = ("canceled", "incomplete_expired")


async def checkout_completed(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
    checkout = object_of(event, stripe.checkout.Session)
    tenant = uuid_of(field(checkout, "client_reference_id")) or await tenant_of(session, checkout)
    await link_customer(session, tenant, id_of(field(checkout, "customer")))


async def subscription(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
    obj = object_of(event, stripe.Subscription)
    sub_id = own_id(obj, "subscription")
    tenant = await tenant_of(session, obj)
    customer = id_of(field(obj, "customer")) or ""
    await link_customer(session, tenant, customer)
    items = field(obj, "items", "data") or []
    first = items[0] if items else None
    price = price_of(first)
    plan = rules.catalogue.plan_for_price(price)
    status = "canceled" if event.type.endswith(".deleted") else str(field(obj, "status"))
    created = int(event.created)
    before = await in_force(session, tenant)
    row = await session.get(Subscription, sub_id, with_for_update=True)
    if row is not None and (
        created < row.event_created
        or (created == row.event_created and row.status in FINAL and status not in FINAL)
    ):
        return  # an older picture than the one kept
    values: dict[str, Any] = {
        "tenant_id": tenant,
        "stripe_customer_id": customer,
        "plan": plan.id if plan else None,
        "price_id": price,
        "status": status,
        "cancel_at_period_end": bool(field(obj, "cancel_at_period_end")),
        # On the subscription in API versions before 2025-03-31, on its items from then on.
        "current_period_start": timestamp(
            field(obj, "current_period_start") or field(first, "current_period_start")
        ),
        "current_period_end": timestamp(
            field(obj, "current_period_end") or field(first, "current_period_end")
        ),
        "event_created": created,
        "updated_at": now(),
    }
    if row is None:
        session.add(Subscription(stripe_subscription_id=sub_id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    await session.flush()
    after = await in_force(session, tenant)
    if after is not None and (before or ("none", ""))[0] != after[0]:
        plan_in_force = rules.catalogue.get(after[0])
        change = SubscriptionChanged(
            plan=after[0],
            status=after[1],
            changed_at=created,
            seats=plan_in_force.seats if plan_in_force else None,
        )
        await emit(session, outbox, new_event(change, source="billing", tenant_id=tenant))


async def in_force(session: AsyncSession, tenant: UUID) -> tuple[str, str] | None:
    """The workspace's plan in force and its status: its live subscription's, else
    ``none`` and its latest subscription's status (None: never subscribed)."""
    rows = (
        await session.scalars(
            select(Subscription)
            .where(col(Subscription.tenant_id) == tenant)
            .order_by(col(Subscription.event_created).desc())
        )
    ).all()
    live = [r for r in rows if r.status in IN_FORCE and r.plan]
    if live:
        return (live[0].plan or "none", live[0].status)
    return ("none", rows[0].status) if rows else None
