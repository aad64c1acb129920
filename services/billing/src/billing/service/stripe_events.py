"""Processing stored Stripe events: subscriptions, paid invoices, refunds and notices.

The worker takes stored events not yet processed, oldest ``created`` first, one
transaction each (the event's effects and its ``processed_at`` commit together, so a crash
repeats nothing and loses nothing). Stripe delivers at least once and in no particular
order; each effect is safe either way:

- **subscriptions** (``customer.subscription.created|updated|deleted|paused|resumed``):
  the row keeps the ``created`` time of the event it came from, and an older event never
  overwrites a newer one (an ``updated`` that arrives before its ``created`` wins; a
  ``deleted`` is final even against another event of the same second). When the
  workspace's plan in force changes, ``bai.billing.subscription.changed.v1`` tells the
  gateway (rate-limit tiers); the plan in force is that of the workspace's active
  (or trialing, or past due) subscription, else ``none``.
- **invoice.paid** grants the plan's monthly credits once, keyed by the invoice id, usable
  until the end of the period paid for plus the grace (see ``billing.service.credits``).
- **charge.refunded** takes back the refunded share of what that invoice granted. API
  versions from 2025-03-31 no longer name the invoice on a charge: ``invoice_payment.paid``
  tells which payment intent (or charge) paid which invoice, and a refund that comes
  before that link waits in ``pending_refunds`` and applies when it comes. A refund and
  its link handled at once by two workers meet: each first takes a lock on the payment's
  ids (charge, payment intent), so the second sees what the first committed.
- **checkout.session.completed** links the Stripe customer to the workspace.
- ``invoice.payment_failed``, ``invoice.payment_action_required``, ``invoice.upcoming``,
  ``customer.subscription.trial_will_end`` and ``charge.dispute.created`` become
  ``bai.billing.notice.v1`` for the workspace's people (live events).
- any other type is stored and marked ``ignored``.

An event that cannot be applied yet (say an invoice whose customer billing does not know
until the checkout event is processed), or that met another worker's lock (a deadlock, a
serialization failure), is ``waiting``: it is tried again with a backoff of
at most a minute, and at once whenever another event was applied (it may have been the one
it waited for). Stripe retries a delivery for three days, so it keeps waiting that long
(``event_wait_seconds``) before it gives up. An event whose handler fails for any other
reason is ``retrying`` with a growing backoff, up to ``event_max_attempts``. An event that
gave up waits for ``python -m billing replay-stripe-events``.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import BillingNotice, SubscriptionChanged
from bai_contracts.billing import NoticeKind
from bai_platform.db import Database
from bai_platform.envelope import new_event
from bai_platform.errors import database_trouble
from bai_platform.outbox import emit
from billing.models import (
    Customer,
    Invoice,
    PendingRefund,
    StripeEvent,
    Subscription,
    outbox,
)
from billing.service import credits
from billing.service.plans import Catalogue

log = structlog.get_logger(__name__)

IN_FORCE = ("active", "trialing", "past_due")
FINAL = ("canceled", "incomplete_expired")
ERROR_LIMIT = 500
# deadlock_detected, serialization_failure, lock_not_available: another worker's turn.
CONFLICTS = frozenset({"40P01", "40001", "55P03"})


class NotYet(Exception):
    """The event cannot be applied yet (try again later); the message says why."""


@dataclass(frozen=True, slots=True)
class Rules:
    catalogue: Catalogue
    grace: timedelta


Handler = Callable[[AsyncSession, dict[str, Any], dict[str, Any], Rules], Awaitable[None]]


WAITING_BACKOFF_CEILING = 60  # seconds between two tries of a waiting event, at most
STRIPE_RETRY_SECONDS = 3 * 24 * 3600  # how long Stripe retries a delivery


async def process_pending(
    db: Database,
    rules: Rules,
    *,
    max_attempts: int,
    wait_seconds: float = STRIPE_RETRY_SECONDS,
    limit: int = 100,
    retry_all: bool = False,
) -> list[tuple[str, str, str]]:
    """Process stored events whose turn has come; (id, type, outcome) of each."""
    done: list[tuple[str, str, str]] = []
    for _ in range(limit):
        async with db.transaction() as session:
            query = select(StripeEvent).where(StripeEvent.processed_at.is_(None))
            if retry_all:  # the operator's replay: everything not processed, each once
                if done:
                    query = query.where(StripeEvent.id.not_in([seen for seen, _, _ in done]))
            else:
                query = query.where(
                    StripeEvent.next_attempt_at <= _now(),
                    or_(StripeEvent.outcome == "waiting", StripeEvent.attempts < max_attempts),
                )
            stored = await session.scalar(
                query.order_by(StripeEvent.created, StripeEvent.received_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if stored is None:
                break
            outcome = await _process(
                session, stored, rules, max_attempts=max_attempts, wait_seconds=wait_seconds
            )
            done.append((stored.id, stored.type, outcome))
    return done


async def _process(
    session: AsyncSession,
    stored: StripeEvent,
    rules: Rules,
    *,
    max_attempts: int,
    wait_seconds: float,
) -> str:
    handler = HANDLERS.get(stored.type)
    stored.attempts += 1
    if handler is None:
        stored.outcome, stored.processed_at = "ignored", _now()
        return "ignored"
    event = stored.payload
    obj = event["data"].get("object") or {}
    try:
        async with session.begin_nested():  # a failure undoes the effects, not the bookkeeping
            await handler(session, event, obj, rules)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, NotYet) else f"{type(exc).__name__}: {exc}"
        stored.last_error = reason[:ERROR_LIMIT]
        waits = _waits(exc)
        outcome = _try_again(
            stored, waits=waits, wait_seconds=wait_seconds, max_attempts=max_attempts
        )
        if not waits:
            log.exception("stripe_event_failed", event_id=stored.id, type=stored.type)
        return outcome
    stored.outcome, stored.processed_at, stored.last_error = "processed", _now(), None
    # What waited may have waited for this one: its turn comes at once. Rows another worker
    # holds are skipped (it is trying them now; waiting for its lock could close a cycle).
    waiting = (
        select(StripeEvent.id)
        .where(StripeEvent.outcome == "waiting", StripeEvent.processed_at.is_(None))
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        update(StripeEvent)
        .where(StripeEvent.id.in_(waiting.scalar_subquery()))
        .values(next_attempt_at=_now())
    )
    return "processed"


def _waits(exc: Exception) -> bool:
    """Whether the event only has to wait: for what it needs (``NotYet``), or for a
    conflict with another worker (deadlock, serialization) or a database away to pass."""
    if isinstance(exc, NotYet) or database_trouble(exc):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONFLICTS


def _try_again(stored: StripeEvent, *, waits: bool, wait_seconds: float, max_attempts: int) -> str:
    """When the event is tried next, or that it gave up (``failed``); its outcome."""
    waited = (_now() - stored.received_at).total_seconds()
    outcome = "failed" if stored.attempts >= max_attempts else "retrying"
    delay = min(2 ** (stored.attempts - 1), 3600)
    if waits and waited < wait_seconds:
        outcome, delay = "waiting", min(delay, WAITING_BACKOFF_CEILING)
    stored.outcome = outcome
    stored.next_attempt_at = _now() + timedelta(seconds=delay)
    return outcome


# ---- whose is it --------------------------------------------------------------------------
def _id(value: object) -> str | None:
    """Stripe ids come as a string, or as the expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _get(obj: dict[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


async def _tenant(session: AsyncSession, obj: dict[str, Any], *metadata: Any) -> UUID:
    """The workspace an object belongs to: our metadata on it, else its customer."""
    for source in (obj.get("metadata"), *metadata):
        if isinstance(source, dict) and (tenant := _uuid(source.get("tenant_id"))):
            return tenant
    customer = _id(obj.get("customer"))
    if customer:
        known = await session.scalar(
            select(Customer.tenant_id).where(Customer.stripe_customer_id == customer)
        )
        if known is not None:
            return known
    raise NotYet(f"no workspace is known for customer {customer!r} yet")


async def _link_customer(session: AsyncSession, tenant: UUID, customer: str | None) -> None:
    if customer:
        await session.execute(
            insert(Customer)
            .values(tenant_id=tenant, stripe_customer_id=customer)
            .on_conflict_do_nothing()
        )


# ---- handlers -------------------------------------------------------------------------------
async def _checkout_completed(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    tenant = _uuid(obj.get("client_reference_id")) or await _tenant(session, obj)
    await _link_customer(session, tenant, _id(obj.get("customer")))


def _price(item_or_line: dict[str, Any]) -> str | None:
    # Subscription items and (older) invoice lines carry ``price``; invoice lines of API
    # versions from 2025 on carry ``pricing.price_details.price``.
    return _id(item_or_line.get("price")) or _id(
        _get(item_or_line, "pricing", "price_details", "price")
    )


def _time(value: object) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


async def _subscription(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    sub_id = _id(obj)
    if sub_id is None:
        raise ValueError("the subscription has no id")
    tenant = await _tenant(session, obj)
    customer = _id(obj.get("customer")) or ""
    await _link_customer(session, tenant, customer)
    items = _get(obj, "items", "data") or []
    first = items[0] if items and isinstance(items[0], dict) else {}
    price = _price(first)
    plan = rules.catalogue.plan_for_price(price)
    status = "canceled" if event["type"].endswith(".deleted") else str(obj.get("status"))
    created = int(event["created"])
    before = await in_force(session, tenant)
    row = await session.get(Subscription, sub_id, with_for_update=True)
    if row is not None and (
        created < row.event_created
        or (created == row.event_created and row.status in FINAL and status not in FINAL)
    ):
        return  # an older picture than the one kept
    values = {
        "tenant_id": tenant,
        "stripe_customer_id": customer,
        "plan": plan.id if plan else None,
        "price_id": price,
        "status": status,
        "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
        "current_period_start": _time(
            obj.get("current_period_start") or first.get("current_period_start")
        ),
        "current_period_end": _time(
            obj.get("current_period_end") or first.get("current_period_end")
        ),
        "event_created": created,
        "updated_at": _now(),
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
            .where(Subscription.tenant_id == tenant)
            .order_by(Subscription.event_created.desc())
        )
    ).all()
    live = [r for r in rows if r.status in IN_FORCE and r.plan]
    if live:
        return (live[0].plan or "none", live[0].status)
    return ("none", rows[0].status) if rows else None


async def _invoice_paid(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    invoice_id = _id(obj)
    if invoice_id is None:
        raise ValueError("the invoice has no id")
    await _lock_payment(session, _id(obj.get("charge")), _id(obj.get("payment_intent")))
    details = _get(obj, "parent", "subscription_details") or obj.get("subscription_details")
    tenant = await _tenant(session, obj, _get(details, "metadata") if details else None)
    sub_id = _id(obj.get("subscription")) or (_id(details.get("subscription")) if details else None)
    lines = [line for line in (_get(obj, "lines", "data") or []) if isinstance(line, dict)]
    plan = next((p for line in lines if (p := rules.catalogue.plan_for_price(_price(line)))), None)
    if plan is None and sub_id:
        known = await session.scalar(
            select(Subscription.plan).where(Subscription.stripe_subscription_id == sub_id)
        )
        plan = rules.catalogue.get(known or "")
    period_end = _time(_get(lines[0], "period", "end") if lines else None) or _time(
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
            charge_id=_id(obj.get("charge")),
            payment_intent_id=_id(obj.get("payment_intent")),
            period_end=period_end,
            amount_refunded=0,
        )
        .on_conflict_do_nothing()
        .returning(Invoice.stripe_invoice_id)
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
        await _notice(session, tenant, "credits_granted", f"{plan.name}: {what}", invoice_id)
    row = await session.get(Invoice, invoice_id, with_for_update=True)
    if row is not None:  # older API versions name the payment here: refunds that waited
        await _settle_pending_refunds(session, row)


async def _charge_refunded(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    charge_id = _id(obj) or ""
    intent = _id(obj.get("payment_intent"))
    await _lock_payment(session, charge_id, intent)
    invoice: Invoice | None = None
    if invoice_id := _id(obj.get("invoice")):  # API versions before 2025-03-31 name it
        invoice = await session.get(Invoice, invoice_id, with_for_update=True)
        if invoice is None:  # its invoice.paid has not been processed yet
            raise NotYet(f"the refunded invoice {invoice_id} is not known yet")
    for column, value in ((Invoice.charge_id, charge_id), (Invoice.payment_intent_id, intent)):
        if invoice is None and value:
            invoice = await session.scalar(select(Invoice).where(column == value).with_for_update())
    tenant = invoice.tenant_id if invoice else await _tenant(session, obj)
    refunded, amount = int(obj.get("amount_refunded") or 0), int(obj.get("amount") or 0)
    message = f"{refunded / 100:.2f} {str(obj.get('currency', '')).upper()} refunded"
    if invoice is not None:
        taken = await _apply_refund(session, invoice, charge_id, amount, refunded)
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
                index_elements=[PendingRefund.charge_id],
                set_={
                    "amount_refunded": func.greatest(
                        PendingRefund.amount_refunded, statement.excluded.amount_refunded
                    )
                },
            )
        )
    await _notice(session, tenant, "charge_refunded", message, charge_id)


async def _apply_refund(
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


async def _invoice_payment_paid(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    """Which payment paid which invoice (API versions from 2025-03-31 say it only here)."""
    invoice_id = _id(obj.get("invoice"))
    if invoice_id is None:
        raise ValueError("the invoice payment names no invoice")
    payment: dict[str, Any] = obj.get("payment") or {}
    if not isinstance(payment, dict):
        raise ValueError("the invoice payment's payment is not an object")
    await _lock_payment(session, _id(payment.get("charge")), _id(payment.get("payment_intent")))
    invoice = await session.get(Invoice, invoice_id, with_for_update=True)
    if invoice is None:
        raise NotYet(f"the paid invoice {invoice_id} is not known yet")
    invoice.payment_intent_id = invoice.payment_intent_id or _id(payment.get("payment_intent"))
    invoice.charge_id = invoice.charge_id or _id(payment.get("charge"))
    await _settle_pending_refunds(session, invoice)


async def _lock_payment(session: AsyncSession, *ids: str | None) -> None:
    """Until the transaction ends, be the only one linking or refunding this payment (its
    charge and payment intent ids, locked in one order so two workers never deadlock)."""
    for key in sorted({f"billing:payment:{i}" for i in ids if i}):
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def _settle_pending_refunds(session: AsyncSession, invoice: Invoice) -> None:
    """Refunds that came before their charge was linked to ``invoice`` apply now."""
    links = [
        column == value
        for column, value in (
            (PendingRefund.charge_id, invoice.charge_id),
            (PendingRefund.payment_intent_id, invoice.payment_intent_id),
        )
        if value
    ]
    if not links:
        return
    pending = await session.scalars(select(PendingRefund).where(or_(*links)).with_for_update())
    for refund in pending:
        await _apply_refund(
            session, invoice, refund.charge_id, refund.amount, refund.amount_refunded
        )
        await session.delete(refund)


def _noticed(kind: NoticeKind, text: Callable[[dict[str, Any]], str]) -> Handler:
    async def handle(
        session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
    ) -> None:
        tenant = await _tenant(session, obj)
        await _notice(session, tenant, kind, text(obj), _id(obj))

    return handle


def _money(obj: dict[str, Any], field: str) -> str:
    return f"{int(obj.get(field) or 0) / 100:.2f} {str(obj.get('currency', '')).upper()}".strip()


async def _notice(
    session: AsyncSession, tenant: UUID, kind: NoticeKind, message: str, reference: str | None
) -> None:
    notice = BillingNotice(notice=kind, message=message[:500], reference=reference)
    await emit(session, outbox, new_event(notice, source="billing", tenant_id=tenant))


async def _dispute(
    session: AsyncSession, event: dict[str, Any], obj: dict[str, Any], rules: Rules
) -> None:
    charge = _id(obj.get("charge"))
    invoice = None
    if charge:
        invoice = await session.scalar(select(Invoice).where(Invoice.charge_id == charge))
    if invoice is None and (intent := _id(obj.get("payment_intent"))):
        invoice = await session.scalar(select(Invoice).where(Invoice.payment_intent_id == intent))
    tenant = invoice.tenant_id if invoice else await _tenant(session, obj)
    reason = obj.get("reason") or "unstated"
    text = f"A payment of {_money(obj, 'amount')} is disputed (reason: {reason})"
    await _notice(session, tenant, "charge_disputed", text, _id(obj))


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.created": _subscription,
    "customer.subscription.updated": _subscription,
    "customer.subscription.deleted": _subscription,
    "customer.subscription.paused": _subscription,
    "customer.subscription.resumed": _subscription,
    "customer.subscription.trial_will_end": _noticed(
        "trial_will_end",
        lambda o: f"The trial ends on {_time(o.get('trial_end')) or 'its last day'}",
    ),
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _noticed(
        "payment_failed",
        lambda o: (
            f"A payment of {_money(o, 'amount_due')} failed; Stripe will try again. "
            "Update the card in the billing portal."
        ),
    ),
    "invoice.payment_action_required": _noticed(
        "payment_action_required",
        lambda o: (
            f"A payment of {_money(o, 'amount_due')} needs your confirmation: "
            f"{o.get('hosted_invoice_url') or 'see the billing portal'}"
        ),
    ),
    "invoice.upcoming": _noticed(
        "invoice_upcoming", lambda o: f"The next invoice, {_money(o, 'amount_due')}, is coming"
    ),
    "invoice_payment.paid": _invoice_payment_paid,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute,
}


def _now() -> datetime:
    return datetime.now(UTC)
