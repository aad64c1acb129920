"""Billing through the edge: Stripe's signed events reach billing without a bearer token;
a paid invoice grants its plan's credits once however often it is delivered, and the
gateway follows the new plan for the workspace's rate-limit tier."""

import asyncio
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from bai_platform.devstack import Stack
from bai_testing.stripe_events import Customer, signed

from .conftest import Account
from .test_live_events import listening

pytestmark = pytest.mark.integration

WEBHOOK = "/v1/billing/webhooks/stripe"
GROWTH = "price_bai_growth_monthly"  # billing's default catalogue
PASSWORD = "correct horse battery"  # conftest.sign_up


async def _send(edge: httpx.AsyncClient, event: dict[str, Any], secret: str) -> httpx.Response:
    raw, signature = signed(event, secret)
    return await edge.post(
        WEBHOOK,
        content=raw,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )


async def _until(
    edge: httpx.AsyncClient, path: str, account: Account, done: Callable[[Any], bool]
) -> Any:
    async with asyncio.timeout(20):
        while True:
            answer = await edge.get(path, headers=account.headers)
            assert answer.status_code == 200, answer.text
            if done(answer.json()):
                return answer.json()
            await asyncio.sleep(0.3)


async def test_a_signed_paid_invoice_grants_its_plan_once_and_the_tier_follows(
    edge: httpx.AsyncClient, account: Account, system: Stack
) -> None:
    secret = system.settings.stripe_webhook_secret
    await _until(edge, "/v1/billing/balance", account, lambda b: b["balances"]["posts"] == 100)
    customer = Customer(UUID(account.tenant_id), GROWTH)
    now = int(time.time())
    subscribed = customer.subscription_event("created", created=now, status="active")
    paid = customer.invoice("invoice.paid", created=now + 1)

    forged = await _send(edge, paid, "whsec_not_the_stacks_secret_000000")
    assert forged.status_code == 400
    assert forged.json()["code"] == "signature_invalid"
    async with listening(edge, account) as live:
        assert (await _send(edge, subscribed, secret)).status_code == 200
        answers = [await _send(edge, paid, secret) for _ in range(3)]
        assert [a.json()["duplicate"] for a in answers] == [False, True, True]
        # The workspace's people hear of it on live events (once, however often it came).
        notice = await live.wait_for(lambda e: e.get("event") == "bai.billing.notice.v1", within=15)
        assert notice["data"]["data"]["notice"] == "credits_granted"
        assert "500 posts" in notice["data"]["data"]["message"]

    balance = await _until(
        edge, "/v1/billing/balance", account, lambda b: b["balances"]["posts"] == 600
    )
    assert balance["plan"] == "growth"
    assert balance["balances"]["extraction_pages"] == 500 + 10_000
    # Delivered again after it was processed: still granted once.
    assert (await _send(edge, paid, secret)).json()["duplicate"] is True
    ledger = await _until(edge, "/v1/billing/ledger", account, lambda _: True)
    beyond_bigint = await edge.get(f"/v1/billing/ledger?before={2**63}", headers=account.headers)
    assert beyond_bigint.status_code == 422  # not a 500 from the database driver
    grants = [
        e for e in ledger["items"] if e["reference"] == f"invoice:{paid['data']['object']['id']}"
    ]
    assert sorted((e["kind"], e["amount"]) for e in grants) == [
        ("chat_messages", 20_000),
        ("extraction_pages", 10_000),
        ("posts", 500),
    ]
    usage = (await edge.get("/v1/billing/usage", headers=account.headers)).json()
    assert usage["kinds"]["posts"]["granted"] == 600
    assert usage["kinds"]["posts"]["next_expiry_amount"] == 500

    # The gateway heard bai.billing.subscription.changed.v1: the growth tier's quota for
    # new sign-ins at once (tokens already checked follow within the 45 s decision cache).
    async with asyncio.timeout(20):
        while True:
            login = await edge.post(
                "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
            )
            fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
            answer = await edge.get("/v1/billing/balance", headers=fresh)
            if answer.headers.get("ratelimit-policy") == '"tenant";q=300;w=60':
                break
            await asyncio.sleep(0.5)
