"""Processing stored Stripe events: a month of a subscription's events leaves the same
ledger and the same subscription whether it arrives in order, duplicated or shuffled;
paid invoices grant once; refunds take back; grants expire; usage alerts fire once."""

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import stripe
from sqlalchemy import func, select, text
from sqlmodel import col
from typer.testing import CliRunner

from bai_contracts import CommitCredits, ReserveCredits
from bai_platform.db import Database
from bai_testing.stripe_events import Customer
from billing.cli import cli
from billing.models import LedgerEntry, PendingRefund, StripeEvent, Subscription, outbox
from billing.service import credits
from billing.service.stripe_events import HANDLERS, Rules, process_pending
from billing.settings import BillingSettings
from billing.webhooks_api import store
from billing.worker import rules_of

GROWTH = "price_bai_growth_monthly"
AGENCY = "price_bai_agency_monthly"
T0 = 1_798_761_600


@pytest.fixture(scope="session")
def rules(billing_settings: BillingSettings) -> Rules:
    return rules_of(billing_settings)


async def deliver(db: Database, rules: Rules, *events: dict[str, Any]) -> None:
    """Store each event as the webhook would, then let the worker process what it can."""
    for event in events:
        async with db.transaction() as session:
            await store(session, event)
        await process_pending(db, rules, max_attempts=8, retry_all=True)


async def settle(db: Database, rules: Rules) -> None:
    """Events that had to wait (their workspace or invoice came later) are tried again."""
    for _ in range(3):
        await process_pending(db, rules, max_attempts=8, retry_all=True)


async def ledger(db: Database, tenant: UUID) -> list[tuple[str, str, int]]:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(LedgerEntry).where(col(LedgerEntry.tenant_id) == tenant)
        )
        return sorted((e.kind, e.entry, e.amount) for e in rows)


async def balances(db: Database, tenant: UUID) -> dict[str, int]:
    async with db.transaction() as session:
        return await credits.balances(session, tenant_id=tenant)


async def subscription(db: Database, customer: Customer) -> tuple[str | None, str, bool]:
    async with db.transaction() as session:
        row = await session.get(Subscription, customer.subscription)
        assert row is not None
        return row.plan, row.status, row.cancel_at_period_end


async def announced(db: Database, tenant: UUID, subject: str) -> list[dict[str, Any]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(outbox.c.payload)
            .where(outbox.c.subject == subject)
            .order_by(outbox.c.created_at)
        )
        envelopes = [json.loads(payload) for (payload,) in rows]
    return [e["data"] for e in envelopes if e.get("tenantid") == str(tenant)]


def a_month(customer: Customer) -> list[dict[str, Any]]:
    """Sign-up, first invoice, an upgrade, the renewal, a half refund, then cancellation."""
    first = customer.invoice("invoice.paid", created=T0 + 12, period=0)
    return [
        customer.checkout_completed(created=T0 + 10),
        customer.subscription_event("created", created=T0 + 10, status="incomplete"),
        customer.subscription_event("updated", created=T0 + 11, status="active"),
        first,
        customer.invoice_payment(first["data"]["object"]["id"], created=T0 + 12),
        customer.subscription_event("updated", created=T0 + 500, price=AGENCY),
        customer.invoice("invoice.paid", created=T0 + 30 * 86_400, period=1, price=AGENCY),
        customer.refund(first["data"]["object"]["id"], created=T0 + 31 * 86_400, refunded=2450),
        customer.subscription_event(
            "updated", created=T0 + 40 * 86_400, price=AGENCY, cancel_at_period_end=True
        ),
        customer.subscription_event(
            "deleted",
            created=T0 + 60 * 86_400,
            status="canceled",
            price=AGENCY,
            cancel_at_period_end=True,
        ),
    ]


async def test_a_month_in_order_duplicated_or_shuffled_leaves_the_same_ledger(
    billing_db: Database, rules: Rules
) -> None:
    orderly, messy = Customer(uuid4(), GROWTH), Customer(uuid4(), GROWTH)
    await deliver(billing_db, rules, *a_month(orderly))
    events = a_month(messy)
    shuffled = events + random.Random(7).sample(events, k=len(events))  # every one twice
    random.Random(11).shuffle(shuffled)
    await deliver(billing_db, rules, *shuffled)
    await settle(billing_db, rules)

    expected = sorted(
        [
            (kind, "grant", n)
            for kind, n in (("posts", 500), ("extraction_pages", 10_000), ("chat_messages", 20_000))
        ]
        + [
            (kind, "grant", n)
            for kind, n in (
                ("posts", 2000),
                ("extraction_pages", 50_000),
                ("chat_messages", 100_000),
            )
        ]
        + [
            (kind, "refund", -n)
            for kind, n in (("posts", 250), ("extraction_pages", 5000), ("chat_messages", 10_000))
        ]
    )
    assert await ledger(billing_db, orderly.tenant) == expected
    assert await ledger(billing_db, messy.tenant) == expected
    assert await balances(billing_db, messy.tenant) == await balances(billing_db, orderly.tenant)
    # The balance is what the ledger says: the sum of its entries, kind by kind.
    summed = dict.fromkeys(("posts", "extraction_pages", "chat_messages"), 0)
    for kind, _, amount in expected:
        summed[kind] += amount
    assert await balances(billing_db, messy.tenant) == summed
    assert await subscription(billing_db, orderly) == ("agency", "canceled", True)
    assert await subscription(billing_db, messy) == ("agency", "canceled", True)
    # The gateway heard the plan in force change: growth, then agency, then none.
    changes = await announced(billing_db, orderly.tenant, "bai.billing.subscription.changed.v1")
    assert [(c["plan"], c["status"], c["seats"]) for c in changes] == [
        ("growth", "active", 5),
        ("agency", "active", 20),
        ("none", "canceled", None),
    ]
    final = await announced(billing_db, messy.tenant, "bai.billing.subscription.changed.v1")
    assert max(final, key=lambda c: c["changed_at"])["plan"] == "none"


async def test_a_paid_invoice_grants_once_whatever_event_carries_it(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    again = {**paid, "id": "evt_another_delivery_of_the_same_invoice"}

    await deliver(billing_db, rules, paid, paid, again)
    await process_pending(billing_db, rules, max_attempts=8, retry_all=True)

    assert await balances(billing_db, customer.tenant) == {
        "posts": 500,
        "extraction_pages": 10_000,
        "chat_messages": 20_000,
    }
    notices = await announced(billing_db, customer.tenant, "bai.billing.notice.v1")
    assert [n["notice"] for n in notices] == ["credits_granted"]


async def test_an_update_that_arrives_before_its_creation_wins(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    created = customer.subscription_event("created", created=T0, status="trialing")
    updated = customer.subscription_event("updated", created=T0 + 5, status="active", price=AGENCY)

    await deliver(billing_db, rules, updated, created)

    assert await subscription(billing_db, customer) == ("agency", "active", False)


async def test_a_deletion_is_final_against_an_update_of_the_same_second(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    deleted = customer.subscription_event("deleted", created=T0, status="canceled")
    updated = customer.subscription_event("updated", created=T0, status="active")

    await deliver(billing_db, rules, deleted, updated)

    assert (await subscription(billing_db, customer))[1] == "canceled"


async def test_an_invoice_of_an_unknown_customer_waits_for_its_workspace(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    paid["data"]["object"]["parent"] = None  # no metadata: only the customer tells
    await deliver(billing_db, rules, paid)
    async with billing_db.transaction() as session:
        waiting = await session.get(StripeEvent, paid["id"])
        assert waiting is not None
        assert (waiting.outcome, waiting.processed_at) == ("waiting", None)
        assert "no workspace is known" in (waiting.last_error or "")
    assert (await balances(billing_db, customer.tenant))["posts"] == 0

    await deliver(billing_db, rules, customer.checkout_completed(created=T0 - 1))
    await settle(billing_db, rules)

    assert (await balances(billing_db, customer.tenant))["posts"] == 500


async def _orphan_invoice(db: Database) -> tuple[Customer, dict[str, Any]]:
    """A paid invoice stored, whose workspace is known only by its customer (whom billing
    does not know before the checkout event)."""
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    paid["data"]["object"]["parent"] = None
    async with db.transaction() as session:
        await store(session, paid)
    return customer, paid


async def _worker_pass(db: Database, rules: Rules, *events: dict[str, Any]) -> list[str]:
    """One pass of the worker (only events whose turn has come); the ids of ``events`` it
    processed. The pass takes every workspace's events whose turn has come: another test's,
    waiting a second, may come due during this one."""
    done = await process_pending(db, rules, max_attempts=2)
    mine = {event["id"] for event in events}
    return [
        event_id for event_id, _, outcome in done if outcome == "processed" and event_id in mine
    ]


async def test_an_event_that_waited_applies_as_soon_as_what_it_waited_for_is_applied(
    billing_db: Database, rules: Rules
) -> None:
    customer, paid = await _orphan_invoice(billing_db)
    checkout = customer.checkout_completed(created=T0 + 1)
    # Waiting, its next try a second away.
    assert await _worker_pass(billing_db, rules, paid, checkout) == []

    async with billing_db.transaction() as session:
        await store(session, checkout)
    # The same pass: the checkout, and at once the invoice that waited for it.
    assert await _worker_pass(billing_db, rules, paid, checkout) == [checkout["id"], paid["id"]]
    assert (await balances(billing_db, customer.tenant))["posts"] == 500


async def test_waking_the_waiting_events_never_waits_for_one_another_worker_holds(
    billing_db: Database, rules: Rules
) -> None:
    """Another worker is trying a waiting event (it holds its row, and may be about to wait
    for a lock this worker holds): applying an event must not wait for that row."""
    customer, paid = await _orphan_invoice(billing_db)
    checkout = customer.checkout_completed(created=T0 + 1)
    assert await _worker_pass(billing_db, rules, paid, checkout) == []  # waiting
    async with billing_db.transaction() as other_worker:
        await other_worker.get(StripeEvent, paid["id"], with_for_update=True)
        async with billing_db.transaction() as session:
            await store(session, checkout)
        async with asyncio.timeout(5):
            assert await _worker_pass(billing_db, rules, paid, checkout) == [checkout["id"]]


async def test_an_event_waits_as_long_as_stripe_would_retry_not_just_max_attempts(
    billing_db: Database, rules: Rules
) -> None:
    customer, paid = await _orphan_invoice(billing_db)
    for _ in range(4):  # twice max_attempts, each time its turn had come
        async with billing_db.transaction() as session:
            row = await session.get(StripeEvent, paid["id"])
            assert row is not None
            row.next_attempt_at = datetime.now(UTC)
        await _worker_pass(billing_db, rules, paid)
    async with billing_db.transaction() as session:
        row = await session.get(StripeEvent, paid["id"])
        assert row is not None
        assert (row.outcome, row.attempts) == ("waiting", 4)

    await deliver(billing_db, rules, customer.checkout_completed(created=T0 + 1))
    assert await _worker_pass(billing_db, rules, paid) == [paid["id"]]
    assert (await balances(billing_db, customer.tenant))["posts"] == 500


async def test_unknown_types_are_marked_ignored(billing_db: Database, rules: Rules) -> None:
    customer = Customer(uuid4(), GROWTH)
    odd = customer.invoice("invoice.paid", created=T0)
    odd["type"] = "issuing_card.created"

    await deliver(billing_db, rules, odd)

    async with billing_db.transaction() as session:
        row = await session.get(StripeEvent, odd["id"])
        assert row is not None
        assert row.outcome == "ignored"
        assert row.processed_at is not None
    assert await ledger(billing_db, customer.tenant) == []


async def test_a_refund_takes_back_only_what_is_left_of_that_invoice(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    await deliver(billing_db, rules, paid)
    async with billing_db.transaction() as session:  # 450 of the 500 posts are spent
        hold = ReserveCredits(tenant_id=customer.tenant, kind="posts", amount=450, reference="j1")
        await credits.reserve(session, hold)
    async with billing_db.transaction() as session:
        await credits.commit(
            session, CommitCredits(tenant_id=customer.tenant, kind="posts", reference="j1")
        )

    invoice_id = paid["data"]["object"]["id"]
    await deliver(
        billing_db,
        rules,
        customer.invoice_payment(invoice_id, created=T0 + 1),
        customer.refund(invoice_id, created=T0 + 9),
    )

    left = await balances(billing_db, customer.tenant)
    assert left["posts"] == 0  # 500 owed back, 50 were left, nothing below zero
    assert left["extraction_pages"] == 0
    entries = await ledger(billing_db, customer.tenant)
    assert ("posts", "refund", -50) in entries


async def test_what_is_left_of_a_paid_month_expires_after_the_grace(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    await deliver(billing_db, rules, customer.invoice("invoice.paid", created=T0, period=0))
    async with billing_db.transaction() as session:
        await credits.grant(
            session, tenant_id=customer.tenant, kind="posts", amount=100, reference="starter:x"
        )
    period_end = datetime.fromtimestamp(T0 + 30 * 86_400, UTC)

    async with billing_db.transaction() as session:
        early = await credits.expire_due(session, now=period_end + timedelta(hours=71))
    assert (await balances(billing_db, customer.tenant))["posts"] == 600
    async with billing_db.transaction() as session:
        await credits.expire_due(session, now=period_end + timedelta(hours=73))

    assert early == 0
    assert (await balances(billing_db, customer.tenant))["posts"] == 100  # the starter stays
    assert ("posts", "expiry", -500) in await ledger(billing_db, customer.tenant)


async def test_usage_alerts_fire_at_eighty_and_a_hundred_percent_once(
    billing_db: Database, rules: Rules
) -> None:
    tenant = uuid4()
    async with billing_db.transaction() as session:
        await credits.grant(session, tenant_id=tenant, kind="posts", amount=10, reference="g1")

    for job, amount in (("a", 7), ("b", 1), ("c", 1), ("d", 1), ("e", 1)):
        async with billing_db.transaction() as session:
            question = ReserveCredits(tenant_id=tenant, kind="posts", amount=amount, reference=job)
            await credits.reserve(session, question)

    alerts = await announced(billing_db, tenant, "bai.billing.credits.threshold_reached.v1")
    assert [(a["kind"], a["threshold"], a["available"]) for a in alerts] == [
        ("posts", 80, 2),
        ("posts", 100, 0),
    ]


async def test_the_replay_command_applies_events_that_gave_up_once_the_cause_is_fixed(
    billing_db: Database,
    rules: Rules,
    billing_settings: BillingSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer, paid = await _orphan_invoice(billing_db)
    for _ in range(2):  # every attempt the worker may make, spent, and no more wait allowed
        await process_pending(billing_db, rules, max_attempts=2, wait_seconds=0, retry_all=True)
    async with billing_db.transaction() as session:
        row = await session.get(StripeEvent, paid["id"])
        assert row is not None
        assert row.outcome == "failed"
    await deliver(billing_db, rules, customer.checkout_completed(created=T0 + 1))
    assert (await balances(billing_db, customer.tenant))["posts"] == 0  # the worker gave up

    monkeypatch.setenv("BAI_DATABASE_URL", billing_settings.database_url.get_secret_value())
    monkeypatch.setenv("BAI_ENVIRONMENT", "test")
    result = await asyncio.to_thread(
        CliRunner().invoke, cli(), ["replay-stripe-events", "--limit", "1000"]
    )

    assert result.exit_code == 0, result.output
    assert paid["id"] in result.output
    assert (await balances(billing_db, customer.tenant))["posts"] == 500


@pytest.mark.parametrize("link_first", [True, False])
async def test_a_refund_finds_its_invoice_whichever_comes_first_refund_or_link(
    billing_db: Database, rules: Rules, link_first: bool
) -> None:
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    invoice_id = paid["data"]["object"]["id"]
    link = customer.invoice_payment(invoice_id, created=T0 + 1)
    refund = customer.refund(invoice_id, created=T0 + 9, refunded=4900 // 2)
    await deliver(billing_db, rules, paid)

    await deliver(billing_db, rules, *((link, refund) if link_first else (refund, link)))

    assert ("posts", "refund", -250) in await ledger(billing_db, customer.tenant)
    assert (await balances(billing_db, customer.tenant))["posts"] == 250
    assert await _pending_refunds(billing_db, customer.tenant) == 0


async def _pending_refunds(db: Database, tenant: UUID) -> int:
    async with db.transaction() as session:
        query = select(func.count()).select_from(PendingRefund)
        return int(await session.scalar(query.where(col(PendingRefund.tenant_id) == tenant)) or 0)


def _event(payload: dict[str, Any]) -> stripe.Event:
    """The stored event as the worker reads it."""
    return stripe.Event.construct_from(payload, key=None)


async def _handle(db: Database, event: dict[str, Any], rules: Rules) -> None:
    async with db.transaction() as session:
        await HANDLERS[event["type"]](session, _event(event), rules)


async def _waiting_on_a_lock_or_done(db: Database, worker: asyncio.Task[None]) -> None:
    """Until ``worker`` waits for an advisory lock (another transaction holds it) or has
    finished without waiting."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    async with asyncio.timeout(10):
        while not worker.done():
            async with db.transaction() as session:
                if await session.scalar(waiting):
                    return
            await asyncio.sleep(0.02)


async def test_a_refund_and_its_link_handled_at_once_by_two_workers_meet(
    billing_db: Database, rules: Rules
) -> None:
    """Worker A keeps a refund it could not link yet; worker B links the payment before A
    commits. Unless B waits for A, B finds no refund waiting and A's stays for good."""
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    invoice_id = paid["data"]["object"]["id"]
    await deliver(billing_db, rules, customer.checkout_completed(created=T0 - 1), paid)
    refund = customer.refund(invoice_id, created=T0 + 9, refunded=4900 // 2)

    async with billing_db.transaction() as worker_a:
        await HANDLERS["charge.refunded"](worker_a, _event(refund), rules)
        link = customer.invoice_payment(invoice_id, created=T0 + 1)
        worker_b = asyncio.create_task(_handle(billing_db, link, rules))
        await _waiting_on_a_lock_or_done(billing_db, worker_b)  # B's turn while A is open
    await worker_b

    assert ("posts", "refund", -250) in await ledger(billing_db, customer.tenant)
    assert await _pending_refunds(billing_db, customer.tenant) == 0


async def test_a_charge_that_names_its_invoice_is_refunded_as_older_api_versions_send_it(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    paid = customer.invoice("invoice.paid", created=T0)
    refund = customer.refund(paid["data"]["object"]["id"], created=T0 + 9, names_invoice=True)

    await deliver(billing_db, rules, refund, paid)  # the refund waits for its invoice
    await settle(billing_db, rules)

    assert ("posts", "refund", -500) in await ledger(billing_db, customer.tenant)


async def test_a_refund_of_a_payment_that_is_no_invoice_of_ours_takes_nothing(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    await deliver(billing_db, rules, customer.checkout_completed(created=T0))
    await deliver(billing_db, rules, customer.refund("in_elsewhere", created=T0 + 9))

    assert [e for e in await ledger(billing_db, customer.tenant) if e[1] == "refund"] == []
    notices = await announced(billing_db, customer.tenant, "bai.billing.notice.v1")
    assert [n["notice"] for n in notices] == ["charge_refunded"]


async def test_an_event_whose_object_is_not_what_its_type_promises_is_refused(
    billing_db: Database, rules: Rules
) -> None:
    customer = Customer(uuid4(), GROWTH)
    refund = customer.refund("in_unknown", created=T0, refunded=100)
    # An invoice.paid carrying a charge: read as the library's objects, it is no invoice.
    confused = {**refund, "type": "invoice.paid"}

    with pytest.raises(ValueError, match="carries a Charge, not Invoice"):
        await _handle(billing_db, confused, rules)
    assert await ledger(billing_db, customer.tenant) == []
