"""A Stripe customer's history for the storms and the chaos suite: distinct genuine events
(checkout, a subscription that changes plan, paid months with their payments, refunds,
notices, types billing ignores), and the ledger they should leave, computed from the
events alone (``Books``); ``settled`` waits, bounded, until billing's ledger holds exactly
that.

The expectation is the test's own: billing's default catalogue and starter grant are
written out again here rather than read from billing.
"""

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from bai_testing.stripe_events import Customer, event

from .conftest import Account

WEBHOOK = "/v1/billing/webhooks/stripe"
MONTHS = 20
AMOUNT = 4900  # every invoice and its charge, in cents

CREDITS = {
    "price_bai_starter_monthly": {"posts": 120, "extraction_pages": 1_000, "chat_messages": 2_000},
    "price_bai_growth_monthly": {"posts": 500, "extraction_pages": 10_000, "chat_messages": 20_000},
    "price_bai_agency_monthly": {
        "posts": 2_000,
        "extraction_pages": 50_000,
        "chat_messages": 100_000,
    },
}
PLAN = {
    "price_bai_starter_monthly": "starter",
    "price_bai_growth_monthly": "growth",
    "price_bai_agency_monthly": "agency",
}
STARTER = {"posts": 100, "extraction_pages": 500, "chat_messages": 200}
PRICES = sorted(CREDITS)
IGNORED_TYPES = ("customer.updated", "payment_intent.created", "product.updated")


@dataclass
class Books:
    """One workspace's distinct genuine events and what they should do to its credits."""

    account: Account
    events: list[dict[str, Any]] = field(default_factory=list)
    grants: dict[str, str] = field(default_factory=dict)  # invoice id -> its price
    refunded: dict[str, int] = field(default_factory=dict)  # invoice id -> most refunded
    plan: str = ""
    starter: dict[str, int] = field(default_factory=lambda: dict(STARTER))

    def expected_grants(self) -> dict[tuple[str, str], int]:
        """(kind, reference) -> amount of every grant entry the ledger should hold."""
        starter = {
            (kind, f"starter:{self.account.tenant_id}"): n for kind, n in self.starter.items() if n
        }
        return starter | {
            (kind, f"invoice:{invoice}"): n
            for invoice, price in self.grants.items()
            for kind, n in CREDITS[price].items()
        }

    def expected_refunds(self) -> dict[tuple[str, str], int]:
        """(kind, charge) -> credits the charge's refunds take back in all (negative)."""
        return {
            (kind, f"ch_{invoice}"): -(n * refunded // AMOUNT)
            for invoice, refunded in self.refunded.items()
            for kind, n in CREDITS[self.grants[invoice]].items()
        }

    def expected_balances(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (kind, _), n in (self.expected_grants() | self.expected_refunds()).items():
            totals[kind] += n
        return dict(totals)


def history(
    account: Account, rng: random.Random, run: str, number: int, months: int = MONTHS
) -> Books:
    """A workspace's genuine events, each with an id of this run."""
    tenant = UUID(account.tenant_id)
    customer = Customer(
        tenant,
        rng.choice(PRICES),
        customer=f"cus_{run}{number}",
        subscription=f"sub_{run}{number}",
    )
    books = Books(account)
    created = itertools.count(int(time.time()) - 100_000)
    prices = [rng.choice(PRICES) for _ in range(5)]
    books.events += [
        customer.checkout_completed(created=next(created), plan=PLAN[prices[0]]),
        customer.subscription_event("created", created=next(created), price=prices[0]),
        *(customer.subscription_event("updated", created=next(created), price=p) for p in prices),
    ]
    books.plan = PLAN[prices[-1]]  # the newest picture of the subscription wins
    for month in range(months):
        price = rng.choice(PRICES)
        paid = customer.invoice("invoice.paid", created=next(created), period=month, price=price)
        invoice = paid["data"]["object"]["id"]
        books.grants[invoice] = price
        books.events += [paid, customer.invoice_payment(invoice, created=next(created))]
    books.events += refunds_of(customer, books, rng, created)
    books.events += noise(customer, rng, created)
    for n, genuine in enumerate(books.events):
        genuine["id"] = f"evt_{run}_{number}_{n:03d}"
    return books


def refunds_of(
    customer: Customer, books: Books, rng: random.Random, created: Iterator[int]
) -> list[dict[str, Any]]:
    """Five refunded invoices: two refunded a quarter and then in full, three once."""
    events = []
    for n, invoice in enumerate(rng.sample(sorted(books.grants), 5)):
        steps = [AMOUNT // 4, AMOUNT] if n < 2 else [rng.choice([AMOUNT // 4, AMOUNT // 2, AMOUNT])]
        events += [customer.refund(invoice, created=next(created), refunded=r) for r in steps]
        books.refunded[invoice] = max(steps)
    return events


def noise(customer: Customer, rng: random.Random, created: Iterator[int]) -> list[dict[str, Any]]:
    """Events that change no credits: notices, and types billing stores and ignores."""
    notices = [
        customer.invoice(kind, created=next(created), period=rng.randrange(MONTHS))
        for kind in ("invoice.payment_failed",) * 3 + ("invoice.upcoming",) * 2
    ]
    notices.append(customer.subscription_event("trial_will_end", created=next(created)))
    ignored = [
        event(kind, {"id": f"obj_{kind}", "customer": customer.customer}, created=next(created))
        for kind in IGNORED_TYPES
    ]
    return notices + ignored


async def ledger(edge: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    before = ""
    while True:
        answer = await edge.get(f"/v1/billing/ledger?limit=200{before}", headers=account.headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        entries += page["items"]
        if page["next_before"] is None:
            return entries
        before = f"&before={page['next_before']}"


def seen(entries: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], int], Counter[Any]]:
    """The ledger as the test expects it: grants by (kind, reference), refunds summed by
    (kind, charge); the rest counted by entry type."""
    grants: dict[tuple[str, str], int] = {}
    other: Counter[Any] = Counter()
    for entry in entries:
        if entry["entry"] == "grant":
            grants[(entry["kind"], entry["reference"])] = entry["amount"]
        elif entry["entry"] == "refund":  # refund:<charge>:<cumulative amount refunded>
            charge = entry["reference"].split(":")[1]
            other[(entry["kind"], charge)] += entry["amount"]
        else:
            other[entry["entry"]] += 1
    return grants, other


async def settled(edge: httpx.AsyncClient, books: Books, *, within: float) -> list[Any]:
    """The workspace's ledger once it holds what the genuine events should make it hold
    (bounded: an event lost or applied twice never gets there)."""
    entries: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while True:
                entries = await ledger(edge, books.account)
                grants, other = seen(entries)
                if grants == books.expected_grants() and other == books.expected_refunds():
                    return entries
                await asyncio.sleep(1.0)
    except TimeoutError:
        grants, other = seen(entries)
        missing = set(books.expected_grants().items()) - set(grants.items())
        extra = set(grants.items()) - set(books.expected_grants().items())
        raise AssertionError(
            f"{books.account.tenant_id}: ledger not as expected after {within} s; "
            f"grants missing {sorted(missing)[:6]}, unexpected {sorted(extra)[:6]}; "
            f"refunds {dict(other)} expected {books.expected_refunds()}"
        ) from None
