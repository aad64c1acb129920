"""Billing's calls to Stripe (Checkout, the customer portal, cancel at period end) through the
official library, against a local server speaking Stripe's API, on the real database."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from sqlalchemy import select
from sqlmodel import col

from bai_platform.db import Database
from bai_testing.plugin import trusting_client
from bai_testing.stripe_api import TEST_API_KEY, FakeStripe, parse_form, stripe_server
from billing.app import create_app
from billing.models import Customer, Subscription
from billing.settings import BillingSettings

Headers = Callable[[UUID, str], dict[str, str]]
GROWTH_PRICE = "price_bai_growth_monthly"
CUSTOMERS, SESSIONS = "/v1/customers", "/v1/checkout/sessions"
PORTAL = "/v1/billing_portal/sessions"


@pytest.fixture
async def fake(billing_settings: BillingSettings) -> AsyncIterator[FakeStripe]:
    prices = {plan.stripe_price_id for plan in billing_settings.plans.values()}
    async with stripe_server(prices=prices) as server:
        yield server


def _wired(settings: BillingSettings, fake: FakeStripe, **changes: Any) -> BillingSettings:
    update = {
        "stripe_api_key": SecretStr(TEST_API_KEY),
        "stripe_api_base": fake.url,
        "stripe_timeout_seconds": 2.0,
        "public_base_url": "https://app.example.test",
    }
    return settings.model_copy(update=update | changes)


@pytest.fixture
async def client(
    billing_settings: BillingSettings, fake: FakeStripe, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_wired(billing_settings, fake))
    async with trusting_client(app, signing_key) as http:
        yield http


@pytest.fixture
def owner(identity_for: Headers, tenant: UUID) -> dict[str, str]:
    return identity_for(tenant, "owner")


async def checkout(
    client: httpx.AsyncClient, who: dict[str, str], plan: str = "growth", key: str | None = None
) -> httpx.Response:
    headers = who | ({"Idempotency-Key": key} if key else {})
    return await client.post("/v1/billing/checkout", json={"plan": plan}, headers=headers)


async def stored_customer(db: Database, tenant: UUID) -> str | None:
    async with db.transaction() as session:
        query = select(col(Customer.stripe_customer_id)).where(col(Customer.tenant_id) == tenant)
        return await session.scalar(query)


async def link_customer(db: Database, fake: FakeStripe, tenant: UUID) -> str:
    """A workspace that already has its Stripe customer."""
    customer: str = fake.add_customer(metadata={"tenant_id": str(tenant)})["id"]
    async with db.transaction() as session:
        session.add(Customer(tenant_id=tenant, stripe_customer_id=customer))
    return customer


async def subscribe(db: Database, fake: FakeStripe, tenant: UUID, status: str = "active") -> str:
    """A workspace on Growth, at Stripe and as its events left it here."""
    customer = await link_customer(db, fake, tenant)
    sub: str = fake.add_subscription(customer=customer, price=GROWTH_PRICE, status=status)["id"]
    async with db.transaction() as session:
        row = Subscription(
            stripe_subscription_id=sub,
            tenant_id=tenant,
            stripe_customer_id=customer,
            plan="growth",
            price_id=GROWTH_PRICE,
            status=status,
            cancel_at_period_end=False,
            event_created=1,
        )
        session.add(row)
    return sub


# ---- checkout -------------------------------------------------------------------------------
async def test_checkout_sells_the_plans_price_to_the_workspaces_customer(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str], tenant: UUID
) -> None:
    response = await checkout(client, owner)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["plan"] == "growth"
    assert body["url"] == fake.checkout_sessions[body["id"]]["url"]
    [customer] = fake.customers
    [sent] = fake.requests_to("POST", SESSIONS)
    metadata = {"tenant_id": str(tenant), "plan": "growth"}
    assert sent.params == {
        "mode": "subscription",
        "line_items": [{"price": GROWTH_PRICE, "quantity": "1"}],
        "customer": customer,
        "client_reference_id": str(tenant),
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": "https://app.example.test/billing?checkout=success",
        "cancel_url": "https://app.example.test/billing?checkout=cancelled",
    }
    assert sent.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    assert all(r.idempotency_key for r in fake.received if r.method == "POST")


async def test_the_customer_is_created_once_for_the_workspace_and_stored(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    assert (await checkout(client, owner, "growth")).status_code == 201
    assert (await checkout(client, owner, "agency")).status_code == 201

    [created] = fake.requests_to("POST", CUSTOMERS)
    assert created.idempotency_key == f"bai-customer-{tenant}"
    assert created.params == {"metadata": {"tenant_id": str(tenant)}}
    [customer] = fake.customers
    assert await stored_customer(billing_db, tenant) == customer
    assert {r.params["customer"] for r in fake.requests_to("POST", SESSIONS)} == {customer}


async def test_first_checkouts_at_once_share_one_customer(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    first, second = await asyncio.gather(
        checkout(client, owner, "growth"), checkout(client, owner, "starter")
    )

    assert (first.status_code, second.status_code) == (201, 201)
    keys = {r.idempotency_key for r in fake.requests_to("POST", CUSTOMERS)}
    assert keys == {f"bai-customer-{tenant}"}
    [customer] = fake.customers
    assert await stored_customer(billing_db, tenant) == customer
    assert {r.params["customer"] for r in fake.requests_to("POST", SESSIONS)} == {customer}


async def test_a_retried_checkout_with_the_same_client_key_reuses_the_stripe_key(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    first = await checkout(client, owner, key="order-42")
    again = await checkout(client, owner, key="order-42")

    assert first.json() == again.json()
    first_sent, again_sent = fake.requests_to("POST", SESSIONS)
    assert first_sent.idempotency_key == again_sent.idempotency_key
    assert first_sent.idempotency_key != "order-42"  # scoped, not the client's own
    assert len(fake.checkout_sessions) == 1


async def test_the_same_client_key_for_another_plan_or_workspace_is_another_request(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str], identity_for: Headers
) -> None:
    growth = await checkout(client, owner, "growth", key="order-42")
    agency = await checkout(client, owner, "agency", key="order-42")
    elsewhere = await checkout(client, identity_for(uuid4(), "owner"), "growth", key="order-42")

    assert [r.status_code for r in (growth, agency, elsewhere)] == [201, 201, 201]
    keys = {r.idempotency_key for r in fake.requests_to("POST", SESSIONS)}
    assert len(keys) == 3
    assert len(fake.checkout_sessions) == 3


async def test_checkouts_without_a_client_key_each_get_a_fresh_stripe_key(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    first, second = await checkout(client, owner), await checkout(client, owner)

    assert first.json()["id"] != second.json()["id"]
    first_sent, second_sent = fake.requests_to("POST", SESSIONS)
    assert first_sent.idempotency_key != second_sent.idempotency_key


async def test_an_unknown_plan_is_422_naming_plan_and_sends_nothing(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    response = await checkout(client, owner, "platinum")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "plan"]
    assert fake.received == []


@pytest.mark.parametrize("status", ["active", "trialing", "past_due"])
async def test_a_subscribed_workspace_is_sent_to_the_portal_to_change_plans(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
    status: str,
) -> None:
    await subscribe(billing_db, fake, tenant, status)

    response = await checkout(client, owner, "agency")

    assert response.status_code == 409
    assert response.json()["code"] == "already_subscribed"
    assert "portal" in response.json()["detail"]
    assert fake.received == []


async def test_a_canceled_subscription_does_not_stop_a_new_checkout(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    await subscribe(billing_db, fake, tenant, "canceled")

    response = await checkout(client, owner)

    assert response.status_code == 201
    assert fake.requests_to("POST", CUSTOMERS) == []  # the known customer is reused


# ---- portal ---------------------------------------------------------------------------------
async def test_the_portal_needs_a_billing_account(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    response = await client.post("/v1/billing/portal", headers=owner)

    assert response.status_code == 409
    assert response.json()["code"] == "no_billing_account"
    assert fake.received == []


async def test_the_portal_opens_for_the_workspaces_customer(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    customer = await link_customer(billing_db, fake, tenant)

    response = await client.post("/v1/billing/portal", headers=owner)

    assert response.status_code == 201, response.text
    [portal] = fake.portal_sessions.values()
    assert response.json() == {"url": portal["url"]}
    [sent] = fake.requests_to("POST", PORTAL)
    assert sent.params == {"customer": customer, "return_url": "https://app.example.test/billing"}
    assert sent.idempotency_key


# ---- cancel ---------------------------------------------------------------------------------
async def test_cancel_ends_the_subscription_at_period_end_at_stripe_and_here(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    sub = await subscribe(billing_db, fake, tenant)

    response = await client.post("/v1/billing/subscription/cancel", headers=owner)

    assert response.status_code == 200, response.text
    assert response.json()["cancel_at_period_end"] is True
    assert response.json()["plan"] == "growth"
    assert fake.subscriptions[sub]["cancel_at_period_end"] is True
    [sent] = fake.requests_to("POST", f"/v1/subscriptions/{sub}")
    assert sent.params == {"cancel_at_period_end": "true"}
    assert sent.idempotency_key
    async with billing_db.transaction() as session:
        row = await session.get(Subscription, sub)
        assert row is not None
        assert row.cancel_at_period_end is True
        assert row.event_created == 1  # the confirming event still applies


async def test_cancel_without_an_active_subscription_is_409(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    await subscribe(billing_db, fake, tenant, "canceled")

    response = await client.post("/v1/billing/subscription/cancel", headers=owner)

    assert response.status_code == 409
    assert response.json()["code"] == "no_active_subscription"
    assert fake.received == []


# ---- when Stripe fails ----------------------------------------------------------------------
async def test_stripe_failing_to_create_the_customer_is_502_and_stores_nothing(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    fake.fail_next(2, path=CUSTOMERS)  # the call and its retry

    response = await checkout(client, owner)

    assert response.status_code == 502
    assert response.json()["code"] == "stripe_unavailable"
    assert await stored_customer(billing_db, tenant) is None
    assert fake.requests_to("POST", SESSIONS) == []


async def test_a_failed_checkout_keeps_the_customer_stripe_created_for_the_retry(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
) -> None:
    fake.fail_next(2, path=SESSIONS)  # the call and its retry
    assert (await checkout(client, owner)).status_code == 502
    [customer] = fake.customers
    assert await stored_customer(billing_db, tenant) == customer

    assert (await checkout(client, owner)).status_code == 201
    assert len(fake.requests_to("POST", CUSTOMERS)) == 1


async def test_a_passing_stripe_500_is_retried_with_the_same_key(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    fake.fail_next(1, path=SESSIONS)

    response = await checkout(client, owner)

    assert response.status_code == 201
    failed, retried = fake.requests_to("POST", SESSIONS)
    assert failed.idempotency_key == retried.idempotency_key
    assert len(fake.checkout_sessions) == 1


async def test_a_stripe_that_does_not_answer_in_time_is_retried_then_502(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    fake.hang_next(1, path=SESSIONS)
    assert (await checkout(client, owner)).status_code == 201

    fake.hang_next(2, path=SESSIONS)
    response = await checkout(client, owner)

    assert response.status_code == 502
    assert response.json()["code"] == "stripe_unavailable"


async def test_an_answer_over_the_size_cap_is_502(
    client: httpx.AsyncClient, fake: FakeStripe, owner: dict[str, str]
) -> None:
    fake.oversize_next(1)

    response = await checkout(client, owner)

    assert response.status_code == 502
    assert len(fake.received) == 1  # refused, not retried


async def test_a_refused_api_key_is_502_and_never_echoed(
    billing_settings: BillingSettings,
    fake: FakeStripe,
    signing_key: Ed25519PrivateKey,
    owner: dict[str, str],
) -> None:
    wrong = "sk_test_wrong_key_that_must_stay_secret"
    settings = _wired(billing_settings, fake, stripe_api_key=SecretStr(wrong))
    async with trusting_client(create_app(settings), signing_key) as client:
        response = await checkout(client, owner)

    assert response.status_code == 502
    assert "sk_" not in response.text
    assert "secret" not in response.text
    assert fake.customers == {}


async def test_without_an_api_key_billing_is_not_configured(
    billing_settings: BillingSettings,
    fake: FakeStripe,
    signing_key: Ed25519PrivateKey,
    owner: dict[str, str],
) -> None:
    settings = _wired(billing_settings, fake, stripe_api_key=SecretStr(""))
    async with trusting_client(create_app(settings), signing_key) as client:
        answers = [
            await checkout(client, owner),
            await client.post("/v1/billing/portal", headers=owner),
            await client.post("/v1/billing/subscription/cancel", headers=owner),
        ]

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert {a.json()["code"] for a in answers} == {"billing_not_configured"}
    assert fake.received == []


@pytest.mark.parametrize("role", ["viewer", "editor"])
@pytest.mark.parametrize("path", ["/checkout", "/portal", "/subscription/cancel"])
async def test_only_owners_and_admins_change_billing(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    identity_for: Headers,
    tenant: UUID,
    billing_db: Database,
    role: str,
    path: str,
) -> None:
    await subscribe(billing_db, fake, tenant)

    response = await client.post(
        f"/v1/billing{path}", json={"plan": "growth"}, headers=identity_for(tenant, role)
    )

    assert response.status_code == 403
    assert fake.received == []


async def test_an_admin_may_check_out(
    client: httpx.AsyncClient, fake: FakeStripe, identity_for: Headers, tenant: UUID
) -> None:
    response = await checkout(client, identity_for(tenant, "admin"))

    assert response.status_code == 201


# ---- reads ----------------------------------------------------------------------------------
async def test_the_plans_are_the_catalogue(
    client: httpx.AsyncClient, identity_for: Headers, tenant: UUID
) -> None:
    response = await client.get("/v1/billing/plans", headers=identity_for(tenant, "viewer"))

    assert response.status_code == 200
    plans = {p["id"]: p for p in response.json()}
    assert set(plans) == {"starter", "growth", "agency"}
    assert plans["growth"]["seats"] == 5
    assert plans["growth"]["monthly_credits"]["posts"] == 500


async def test_a_workspace_without_a_subscription_says_none(
    client: httpx.AsyncClient, owner: dict[str, str]
) -> None:
    response = await client.get("/v1/billing/subscription", headers=owner)

    assert response.status_code == 200
    assert response.json()["plan"] is None
    assert response.json()["status"] == "none"


async def test_the_subscription_shown_is_the_live_one(
    client: httpx.AsyncClient,
    fake: FakeStripe,
    identity_for: Headers,
    tenant: UUID,
    billing_db: Database,
) -> None:
    await subscribe(billing_db, fake, tenant, "past_due")

    response = await client.get("/v1/billing/subscription", headers=identity_for(tenant, "viewer"))

    assert response.json()["plan"] == "growth"
    assert response.json()["status"] == "past_due"


# ---- the stand-in itself --------------------------------------------------------------------
async def test_the_stand_in_replays_a_key_and_refuses_it_with_other_params(
    fake: FakeStripe,
) -> None:
    headers = {"Authorization": f"Bearer {TEST_API_KEY}", "Idempotency-Key": "k-1"}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers) as http:
        first = await http.post(CUSTOMERS, data={"name": "A"})
        again = await http.post(CUSTOMERS, data={"name": "A"})
        other = await http.post(CUSTOMERS, data={"name": "B"})

    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    assert len(fake.customers) == 1


async def test_the_stand_in_wants_the_api_key(fake: FakeStripe) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        anonymous = await http.post(CUSTOMERS, data={"name": "A"})
        other = {"Authorization": "Bearer sk_test_other"}
        wrong = await http.post(CUSTOMERS, data={"name": "A"}, headers=other)

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    assert wrong.status_code == 401
    assert fake.customers == {}


def test_stripe_forms_unfold_into_nested_params() -> None:
    form = "line_items[0][price]=p&line_items[0][quantity]=1&metadata[plan]=growth&mode=x"

    assert parse_form(form) == {
        "line_items": [{"price": "p", "quantity": "1"}],
        "metadata": {"plan": "growth"},
        "mode": "x",
    }


# ---- no database connection is held while Stripe answers ------------------------------------
@pytest.fixture
async def one_connection_client(
    billing_settings: BillingSettings, fake: FakeStripe, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a pool of one connection: a request holding it shuts out every other."""
    settings = _wired(
        billing_settings,
        fake,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_seconds=1.0,
        stripe_timeout_seconds=10.0,  # Stripe's hang lasts until the test releases it
    )
    async with trusting_client(create_app(settings), signing_key) as http:
        yield http


@pytest.mark.parametrize(
    ("action", "path"),
    [("checkout", CUSTOMERS), ("checkout", SESSIONS), ("portal", PORTAL), ("cancel", "sub")],
)
async def test_while_stripe_answers_the_database_connection_serves_other_requests(
    one_connection_client: httpx.AsyncClient,
    fake: FakeStripe,
    owner: dict[str, str],
    tenant: UUID,
    billing_db: Database,
    action: str,
    path: str,
) -> None:
    http = one_connection_client
    if action == "portal":
        await link_customer(billing_db, fake, tenant)
    if action == "cancel":
        path = f"/v1/subscriptions/{await subscribe(billing_db, fake, tenant)}"
    route = {"checkout": "/v1/billing/checkout", "portal": "/v1/billing/portal"}
    fake.hang_next(1, path=path)
    call = asyncio.create_task(
        http.post(
            route.get(action, "/v1/billing/subscription/cancel"),
            json={"plan": "growth"} if action == "checkout" else None,
            headers=owner,
        )
    )
    async with asyncio.timeout(10):
        while not fake.requests_to("POST", path):  # Stripe has the call and holds it
            await asyncio.sleep(0.02)

    meanwhile = await http.get("/v1/billing/subscription", headers=owner)
    fake.release_hangs()  # the hung call answers 503; the library's retry goes through

    assert meanwhile.status_code == 200, meanwhile.text
    assert (await call).status_code in (200, 201)
