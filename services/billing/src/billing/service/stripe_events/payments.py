"""Refunds against the invoice a payment paid, whichever of the two Stripe tells first."""

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import Invoice, PendingRefund
from billing.service import credits


async def lock_payment(session: AsyncSession, *ids: str | None) -> None:
    """Until the transaction ends, be the only one linking or refunding this payment (its
    charge and payment intent ids, locked in one order so two workers never deadlock)."""
    for key in sorted({f"billing:payment:{i}" for i in ids if i}):
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def apply_refund(
    session: AsyncSession, invoice: Invoice, charge_id: str, amount: int, refunded: int
) -> int:
    """Take back the refunded share of what ``invoice`` granted; the credits taken."""
    if amount <= 0:
        return 0
    invoice.amount_refunded = max(invoice.amount_refunded, refunded)
    return await credits.claw_back(
        session,
        tenant_id=invoice.tenant_id,
        invoice_id=invoice.stripe_invoice_id,
        share=refunded / amount,
        reference=f"refund:{charge_id}:{refunded}",
    )


async def settle_pending_refunds(session: AsyncSession, invoice: Invoice) -> None:
    """Refunds that came before their charge was linked to ``invoice`` apply now."""
    links = [
        column == value
        for column, value in (
            (col(PendingRefund.charge_id), invoice.charge_id),
            (col(PendingRefund.payment_intent_id), invoice.payment_intent_id),
        )
        if value
    ]
    if not links:
        return
    pending = await session.scalars(select(PendingRefund).where(or_(*links)).with_for_update())
    for refund in pending:
        await apply_refund(
            session, invoice, refund.charge_id, refund.amount, refund.amount_refunded
        )
        await session.delete(refund)
