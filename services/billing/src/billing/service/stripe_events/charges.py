"""Charges: refunds take back the refunded share of an invoice's credits; disputes are
told to the workspace."""

import stripe
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import Invoice, PendingRefund
from billing.service.stripe_events.common import (
    NotYet,
    Rules,
    field,
    id_of,
    money,
    notice,
    object_of,
    tenant_of,
)
from billing.service.stripe_events.payments import apply_refund, lock_payment


async def charge_refunded(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
    obj = object_of(event, stripe.Charge)
    charge_id = id_of(obj) or ""
    intent = id_of(field(obj, "payment_intent"))
    await lock_payment(session, charge_id, intent)
    invoice: Invoice | None = None
    if invoice_id := id_of(field(obj, "invoice")):  # API versions before 2025-03-31 name it
        invoice = await session.get(Invoice, invoice_id, with_for_update=True)
        if invoice is None:  # its invoice.paid has not been processed yet
            raise NotYet(f"the refunded invoice {invoice_id} is not known yet")
    for column, value in (
        (col(Invoice.charge_id), charge_id),
        (col(Invoice.payment_intent_id), intent),
    ):
        if invoice is None and value:
            invoice = await session.scalar(select(Invoice).where(column == value).with_for_update())
    tenant = invoice.tenant_id if invoice else await tenant_of(session, obj)
    refunded = int(field(obj, "amount_refunded") or 0)
    amount = int(field(obj, "amount") or 0)
    message = f"{refunded / 100:.2f} {str(field(obj, 'currency') or '').upper()} refunded"
    if invoice is not None:
        taken = await apply_refund(session, invoice, charge_id, amount, refunded)
        message += f"; {taken} credits of that invoice taken back"
    elif amount > 0:
        # Not linked to an invoice yet: kept until invoice_payment.paid links them.
        statement = insert(PendingRefund).values(
            charge_id=charge_id,
            tenant_id=tenant,
            payment_intent_id=intent,
            amount=amount,
            amount_refunded=refunded,
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[col(PendingRefund.charge_id)],
                set_={
                    "amount_refunded": func.greatest(
                        col(PendingRefund.amount_refunded), statement.excluded.amount_refunded
                    )
                },
            )
        )
    await notice(session, tenant, "charge_refunded", message, charge_id)


async def dispute(session: AsyncSession, event: stripe.Event, rules: Rules) -> None:
    obj = object_of(event, stripe.Dispute)
    charge = id_of(field(obj, "charge"))
    invoice = None
    if charge:
        invoice = await session.scalar(select(Invoice).where(col(Invoice.charge_id) == charge))
    if invoice is None and (intent := id_of(field(obj, "payment_intent"))):
        invoice = await session.scalar(
            select(Invoice).where(col(Invoice.payment_intent_id) == intent)
        )
    tenant = invoice.tenant_id if invoice else await tenant_of(session, obj)
    reason = field(obj, "reason") or "unstated"
    text = f"A payment of {money(obj, 'amount')} is disputed (reason: {reason})"
    await notice(session, tenant, "charge_disputed", text, id_of(obj))
