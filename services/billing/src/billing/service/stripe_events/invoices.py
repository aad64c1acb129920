"""Paid invoices: the plan's monthly credits granted once per invoice, and which payment
paid which invoice (``invoice_payment.paid``, from API version 2025-03-31 on)."""

from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import Invoice, Subscription
from billing.service import credits
from billing.service.stripe_events.common import (
    NotYet,
    Rules,
    dig,
    id_of,
    notice,
    own_id,
    price_of,
    tenant_of,
    timestamp,
)
from billing.service.stripe_events.payments import lock_payment, settle_pending_refunds

log = structlog.get_logger(__name__)


async def invoice_paid(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    invoice_id = own_id(obj, "invoice")
    await lock_payment(session, id_of(obj.get("charge")), id_of(obj.get("payment_intent")))
    details = dig(obj, "parent", "subscription_details") or obj.get("subscription_details")
    tenant = await tenant_of(session, obj, dig(details, "metadata") if details else None)
    sub_id = id_of(obj.get("subscription")) or (
        id_of(details.get("subscription")) if details else None
    )
    lines = [line for line in (dig(obj, "lines", "data") or []) if isinstance(line, dict)]
    plan = next(
        (p for line in lines if (p := rules.catalogue.plan_for_price(price_of(line)))), None
    )
    if plan is None and sub_id:
        known = await session.scalar(
            select(col(Subscription.plan)).where(col(Subscription.stripe_subscription_id) == sub_id)
        )
        plan = rules.catalogue.get(known or "")
    period_end = timestamp(dig(lines[0], "period", "end") if lines else None) or timestamp(
        obj.get("period_end")
    )
    stored = await session.scalar(
        insert(Invoice)
        .values(
            stripe_invoice_id=invoice_id,
            tenant_id=tenant,
            stripe_subscription_id=sub_id,
            plan=plan.id if plan else None,
            amount_paid=int(obj.get("amount_paid") or 0),
            currency=str(obj.get("currency") or "")[:8],
            charge_id=id_of(obj.get("charge")),
            payment_intent_id=id_of(obj.get("payment_intent")),
            period_end=period_end,
            amount_refunded=0,
        )
        .on_conflict_do_nothing()
        .returning(col(Invoice.stripe_invoice_id))
    )
    if plan is None:
        log.info("invoice_without_plan", invoice_id=invoice_id)  # a one-off: nothing to grant
        return
    expires = period_end + rules.grace if period_end else None
    granted = {}
    for kind, amount in plan.monthly_credits.items():
        if amount > 0 and await credits.grant(
            session,
            tenant_id=tenant,
            kind=kind,
            amount=amount,
            reference=f"invoice:{invoice_id}",
            expires_at=expires,
            invoice_id=invoice_id,
        ):
            granted[kind] = amount
    if granted and stored:
        what = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in granted.items())
        await notice(session, tenant, "credits_granted", f"{plan.name}: {what}", invoice_id)
    row = await session.get(Invoice, invoice_id, with_for_update=True)
    if row is not None:  # older API versions name the payment here: refunds that waited
        await settle_pending_refunds(session, row)


async def invoice_payment_paid(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    """Which payment paid which invoice (API versions from 2025-03-31 say it only here)."""
    invoice_id = id_of(obj.get("invoice"))
    if invoice_id is None:
        raise ValueError("the invoice payment names no invoice")
    payment: dict[str, Any] = obj.get("payment") or {}
    if not isinstance(payment, dict):
        raise ValueError("the invoice payment's payment is not an object")
    await lock_payment(session, id_of(payment.get("charge")), id_of(payment.get("payment_intent")))
    invoice = await session.get(Invoice, invoice_id, with_for_update=True)
    if invoice is None:
        raise NotYet(f"the paid invoice {invoice_id} is not known yet")
    invoice.payment_intent_id = invoice.payment_intent_id or id_of(payment.get("payment_intent"))
    invoice.charge_id = invoice.charge_id or id_of(payment.get("charge"))
    await settle_pending_refunds(session, invoice)
