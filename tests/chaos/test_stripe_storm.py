"""A Stripe storm through the edge: about a thousand deliveries for ten workspaces, as
Stripe's at-least-once, any-order delivery and an attacker would send them at once.

Each workspace has a history of distinct genuine events (checkout, a subscription that
changes plan, twenty paid months with their payments, refunds, notices, types billing
ignores). The storm sends each once, re-sends 30 % more as duplicates (same id, freshly
signed), adds 5 % forgeries (body changed after signing, another secret, a garbled or
``v0``-only or missing signature, a forged new invoice) and 3 % stale deliveries (a
signature older than the 300 s tolerance), shuffled with a fixed seed, 32 in flight.

Expected: every forgery and stale delivery is 400 ``signature_invalid`` (problem+json),
every genuine one 200, and exactly one delivery of each event id is answered as new. Once
billing has worked through them, each workspace's ledger is exact: the grants of its paid
invoices (each once) and its starter grant, minus what its refunds took back, which the
test computes from the events alone; the balance is the sum of the ledger.
"""

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import pytest

from bai_platform.devstack import Stack
from billing.testing_events import Customer, event, signed

from .conftest import Account, sign_up
from .storm import PROBLEM_JSON, Shot, storm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEBHOOK = "/v1/billing/webhooks/stripe"
SEED = 14
WORKSPACES = 10
MONTHS = 20
AMOUNT = 4900  # every invoice and its charge, in cents
DUPLICATES, FORGERIES, STALE = 300, 50, 30
SETTLE = 90.0  # seconds billing may take to apply every workspace's events after the storm
STALE_AGE = (330, 86_400)  # seconds before the storm: past the 300 s tolerance
ATTACKER_SECRET = "whsec_not_the_stacks_secret_0000000000"
# The expectation is the test's own: billing's default catalogue and starter grant,
# written out again rather than read from billing.
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

    def expected_grants(self) -> dict[tuple[str, str], int]:
        """(kind, reference) -> amount of every grant entry the ledger should hold."""
        starter = {(kind, f"starter:{self.account.tenant_id}"): n for kind, n in STARTER.items()}
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


def _history(account: Account, rng: random.Random, run: str, number: int) -> Books:
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
    for month in range(MONTHS):
        price = rng.choice(PRICES)
        paid = customer.invoice("invoice.paid", created=next(created), period=month, price=price)
        invoice = paid["data"]["object"]["id"]
        books.grants[invoice] = price
        books.events += [paid, customer.invoice_payment(invoice, created=next(created))]
    books.events += _refunds(customer, books, rng, created)
    books.events += _noise(customer, rng, created)
    for n, genuine in enumerate(books.events):
        genuine["id"] = f"evt_{run}_{number}_{n:03d}"
    return books


def _refunds(
    customer: Customer, books: Books, rng: random.Random, created: Iterator[int]
) -> list[dict[str, Any]]:
    """Five refunded invoices: two refunded a quarter and then in full, three once."""
    events = []
    for n, invoice in enumerate(rng.sample(sorted(books.grants), 5)):
        steps = [AMOUNT // 4, AMOUNT] if n < 2 else [rng.choice([AMOUNT // 4, AMOUNT // 2, AMOUNT])]
        events += [customer.refund(invoice, created=next(created), refunded=r) for r in steps]
        books.refunded[invoice] = max(steps)
    return events


def _noise(customer: Customer, rng: random.Random, created: Iterator[int]) -> list[dict[str, Any]]:
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


def _headers(signature: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return headers


def _genuine(books: Books, secret: str) -> list[Shot]:
    return [
        Shot("genuine", WEBHOOK, *_signed(e, secret), expect=200, key=e["id"]) for e in books.events
    ]


def _signed(e: dict[str, Any], secret: str, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw, signature = signed(e, secret, timestamp=at)
    return raw, _headers(signature)


def _duplicates(everything: list[Books], secret: str, rng: random.Random) -> list[Shot]:
    """Stripe delivering again: the same event (same bytes), signed anew."""
    events = [e for books in everything for e in books.events]
    return [
        Shot("duplicate", WEBHOOK, *_signed(e, secret), expect=200, key=e["id"])
        for e in rng.choices(events, k=DUPLICATES)
    ]


def _tampered(raw: bytes, books: Books, other: Books) -> bytes:
    """The body changed after signing: a refund made smaller, an event moved to another
    workspace, or anything else made live."""
    changed = json.loads(raw)
    obj = changed["data"]["object"]
    if "amount_refunded" in obj:
        obj["amount_refunded"] = 0
        return json.dumps(changed).encode()
    if books.account.tenant_id in raw.decode():
        return raw.replace(books.account.tenant_id.encode(), other.account.tenant_id.encode())
    return raw.replace(b'"livemode": false', b'"livemode": true')


def _forgeries(everything: list[Books], secret: str, rng: random.Random) -> list[Shot]:
    """Deliveries no verifier may accept, of genuine events and of invented invoices."""
    shots = []
    for n in range(FORGERIES):
        books, other = rng.sample(everything, 2)
        genuine = rng.choice(books.events)
        raw, signature = signed(genuine, secret)
        how = ("body-changed", "other-secret", "garbled", "v0-only", "unsigned", "new-invoice")[
            n % 6
        ]
        if how == "body-changed":
            raw = _tampered(raw, books, other)
        elif how == "other-secret":
            raw, signature = signed(genuine, ATTACKER_SECRET)
        elif how == "garbled":
            signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        elif how == "v0-only":
            signature = signature.replace("v1=", "v0=")
        elif how == "new-invoice":
            genuine = _invented_invoice(books, n)
            raw, signature = signed(genuine, ATTACKER_SECRET)
        header = None if how == "unsigned" else signature
        shots.append(Shot(f"forged:{how}", WEBHOOK, raw, _headers(header), 400, genuine["id"]))
    return shots


def _invented_invoice(books: Books, n: int) -> dict[str, Any]:
    """An agency month nobody paid, for the workspace, under an id never delivered."""
    customer = Customer(
        UUID(books.account.tenant_id),
        "price_bai_agency_monthly",
        customer=f"cus_invented{n}",
        subscription=f"sub_invented{n}",
    )
    invented = customer.invoice("invoice.paid", created=int(time.time()), period=100 + n)
    invented["id"] = f"evt_invented_{n}_{uuid.uuid4().hex[:8]}"
    return invented


def _stale(everything: list[Books], secret: str, rng: random.Random) -> list[Shot]:
    """Captured deliveries replayed past the tolerance: genuine events, and new invoices."""
    shots = []
    now = int(time.time())
    for n in range(STALE):
        books = rng.choice(everything)
        old = rng.choice(books.events) if n % 2 else _invented_invoice(books, 1000 + n)
        raw, headers = _signed(old, secret, at=now - rng.randint(*STALE_AGE))
        shots.append(Shot("stale", WEBHOOK, raw, headers, 400, old["id"]))
    return shots


async def _ledger(edge: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
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


def _seen(entries: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], int], Counter[Any]]:
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


async def _settled(edge: httpx.AsyncClient, books: Books, *, within: float) -> list[Any]:
    """The workspace's ledger once it holds what the genuine events should make it hold
    (bounded: an event lost or applied twice never gets there)."""
    entries: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while True:
                entries = await _ledger(edge, books.account)
                grants, other = _seen(entries)
                if grants == books.expected_grants() and other == books.expected_refunds():
                    return entries
                await asyncio.sleep(1.0)
    except TimeoutError:
        grants, other = _seen(entries)
        missing = set(books.expected_grants().items()) - set(grants.items())
        extra = set(grants.items()) - set(books.expected_grants().items())
        raise AssertionError(
            f"{books.account.tenant_id}: ledger not as expected after {within} s; "
            f"grants missing {sorted(missing)[:6]}, unexpected {sorted(extra)[:6]}; "
            f"refunds {dict(other)} expected {books.expected_refunds()}"
        ) from None


async def test_a_thousand_shuffled_duplicated_and_forged_stripe_events_leave_exact_ledgers(
    edge: httpx.AsyncClient, system: Stack
) -> None:
    secret = system.settings.stripe_webhook_secret
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:8]
    # One at a time: a sign-up hashes a password, ten at once can outlast a client timeout.
    accounts = [await sign_up(edge, f"Storm {n}") for n in range(WORKSPACES)]
    everything = [_history(a, rng, run, n) for n, a in enumerate(accounts)]
    shots = [s for books in everything for s in _genuine(books, secret)]
    shots += _duplicates(everything, secret, rng)
    shots += _forgeries(everything, secret, rng) + _stale(everything, secret, rng)
    rng.shuffle(shots)

    report = await storm(edge, shots, name="Stripe storm", rate=250, in_flight=32)
    print("\n" + report.table())

    assert not report.unexpected(), [
        (h.shot.kind, h.status, h.json) for h in report.unexpected()[:10]
    ]
    for hit in report.hits:
        if hit.status == 400:
            assert hit.content_type == PROBLEM_JSON, hit.content_type
            assert isinstance(hit.json, dict)
            assert hit.json["code"] == "signature_invalid"
    firsts: defaultdict[str, list[bool]] = defaultdict(list)
    for hit in report.hits:
        if hit.status == 200:
            assert isinstance(hit.json, dict)
            firsts[hit.shot.key].append(not hit.json["duplicate"])
    genuine_ids = {e["id"] for books in everything for e in books.events}
    assert set(firsts) == genuine_ids
    assert all(news.count(True) == 1 for news in firsts.values()), "an event stored twice"

    # Billing works through the stored events after answering; an event that needs another
    # one first (a refund before its invoice) waits with backoff, hence the generous bound.
    started = time.monotonic()
    for books in everything:
        entries = await _settled(edge, books, within=max(5.0, started + SETTLE - time.monotonic()))
        # Only grants and refunds: nothing was reserved, committed or expired meanwhile.
        assert {e["entry"] for e in entries} <= {"grant", "refund"}
        keys = Counter((e["kind"], e["entry"], e["reference"]) for e in entries)
        assert max(keys.values()) == 1, "a ledger entry made twice"
        balance = (await edge.get("/v1/billing/balance", headers=books.account.headers)).json()
        ledger_sums: Counter[str] = Counter()
        for entry in entries:
            ledger_sums[entry["kind"]] += entry["amount"]
        assert balance["balances"] == books.expected_balances() == dict(ledger_sums)
        assert balance["plan"] == books.plan
    print(f"billing settled every workspace {time.monotonic() - started:.1f} s after the storm")
