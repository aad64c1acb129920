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

import json
import random
import time
import uuid
from collections import Counter, defaultdict
from typing import Any
from uuid import UUID

import httpx
import pytest

from bai_platform.devstack import Stack
from bai_testing.stripe_events import Customer, signed

from .conftest import sign_up
from .storm import PROBLEM_JSON, Shot, storm
from .stripe_books import WEBHOOK, Books, history, settled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 14
WORKSPACES = 10
DUPLICATES, FORGERIES, STALE = 300, 50, 30
SETTLE = 90.0  # seconds billing may take to apply every workspace's events after the storm
STALE_AGE = (330, 86_400)  # seconds before the storm: past the 300 s tolerance
ATTACKER_SECRET = "whsec_not_the_stacks_secret_0000000000"


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


async def test_a_thousand_shuffled_duplicated_and_forged_stripe_events_leave_exact_ledgers(
    edge: httpx.AsyncClient, system: Stack
) -> None:
    secret = system.settings.stripe_webhook_secret
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:8]
    # One at a time: a sign-up hashes a password, ten at once can outlast a client timeout.
    accounts = [await sign_up(edge, f"Storm {n}") for n in range(WORKSPACES)]
    everything = [history(a, rng, run, n) for n, a in enumerate(accounts)]
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
        entries = await settled(edge, books, within=max(5.0, started + SETTLE - time.monotonic()))
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
