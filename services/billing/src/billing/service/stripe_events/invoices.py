"""Paid invoices: the plan's monthly credits granted once per invoice, and which payment
paid which invoice (``invoice_payment.paid``, from API version 2025-03-31 on)."""

import stripe
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
    field,
    id_of,
    notice,
    object_of,
    own_id,
    price_of,
    tenant_of,
    timestamp,
)
from billing.service.stripe_events.payments import lock_payment, settle_pending_refunds

log = structlog.get_logger(__name__)


async def invoice_paid(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
    obj = object_of(event, stripe.Invoice)
    invoice_id = own_id(obj, "invoice")
    # API versions before 2025-03-31 name the payment, the subscription and its details on
    # the invoice itself; later ones under ``parent`` (and the payment only in
    # ``invoice_payment.paid``).
    await lock_payment(session, id_of(field(obj, "charge")), id_of(field(obj, "payment_intent")))
    details = field(obj, "parent", "subscription_details") or field(obj, "subscription_details")
    tenant = await tenant_of(session, obj, field(details, "metadata"))
    sub_id = id_of(field(obj, "subscription")) or id_of(field(details, "subscription"))
    lines = list(field(obj, "lines", "data") or [])
    plan = next(
        (p for line in lines if (p := rules.catalogue.plan_for_price(price_of(line)))), None
    )
    if plan is None and sub_id:
        known = await session.scalar(
            select(col(Subscription.plan)).where(col(Subscription.stripe_subscription_id) == sub_id)
        )
        plan = rules.catalogue.get(known or "")
    period_end = timestamp(field(lines[0], "period", "end") if lines else None) or timestamp(
        field(obj, "period_end")
    )
    stored = await session.scalar(
        insert(Invoice)
        .values(
            stripe_invoice_id=invoice_id,
            tenant_id=tenant,
            stripe_subscription_id=sub_id,
            plan=plan.id if plan else None,
            amount_paid=int(field(obj, "amount_paid") or 0),
            currency=str(field(obj, "currency") or "")[:8],
            charge_id=id_of(field(obj, "charge")),
            payment_intent_id=id_of(field(obj, "payment_intent")),
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


async def invoice_payment_paid(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
    """Which payment paid which invoice (API versions from 2025-03-31 say it only here)."""
    obj = object_of(event, stripe.InvoicePayment)
    invoice_id = id_of(field(obj, "invoice"))
    if invoice_id is None:
        raise ValueError("the invoice payment names no invoice")
    payment = field(obj, "payment")
    if payment is not None and not isinstance(payment, stripe.StripeObject):
        raise ValueError("the invoice payment's payment is not an object")
    charge, intent = id_of(field(payment, "charge")), id_of(field(payment, "payment_intent"))
    await lock_payment(session, charge, intent)
    invoice = await session.get(Invoice, invoice_id, with_for_update=True)
    if invoice is None:
        raise NotYet(f"the paid invoice {invoice_id} is not known yet")
    invoice.payment_intent_id = invoice.payment_intent_id or intent
    invoice.charge_id = invoice.charge_id or charge
    await settle_pending_refunds(session, invoice)
