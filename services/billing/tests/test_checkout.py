"""Billing's calls to Stripe (Checkout, the customer portal, cancel at period end) through the
official library, against a local server speaking Stripe's API, on the real database."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
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
from bai_testing.stripe_api import TEST_API_KEY, FakeStripe, Received, parse_form, stripe_server
from billing.app import create_app
from billing.models import Customer, Subscription
from billing.settings import BillingSettings

Headers = Callable[[UUID, str], dict[str, str]]
GROWTH_PRICE = "price_bai_growth_monthly"
CUSTOMERS, SESSIONS = "/v1/customers", "/v1/checkout/sessions"
PORTAL = "/v1/billing_portal/sessions"


@dataclass(frozen=True)
class Workspace:
    """The test's workspace as billing's API and database see it, and the Stripe stand-in
    that billing's ``client`` talks to. Calls are its owner's unless ``who`` says otherwise."""

    client: httpx.AsyncClient
    fake: FakeStripe
    db: Database
    tenant: UUID
    owner: dict[str, str]
    identity_for: Headers

    def member(self, role: str) -> dict[str, str]:
        """Headers of a user with ``role`` in this workspace."""
        return self.identity_for(self.tenant, role)

    async def checkout(
        self, plan: str = "growth", *, key: str | None = None, who: dict[str, str] | None = None
    ) -> httpx.Response:
        headers = (who or self.owner) | ({"Idempotency-Key": key} if key else {})
        return await self.client.post("/v1/billing/checkout", json={"plan": plan}, headers=headers)

    async def portal(self) -> httpx.Response:
        return await self.client.post("/v1/billing/portal", headers=self.owner)

    async def cancel(self) -> httpx.Response:
        return await self.client.post("/v1/billing/subscription/cancel", headers=self.owner)

    async def subscription(self, who: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.get("/v1/billing/subscription", headers=who or self.owner)

    def sent(self, path: str) -> list[Received]:
        """The POSTs to ``path`` that reached Stripe, in order."""
        return self.fake.requests_to("POST", path)

    async def stored_customer(self) -> str | None:
        async with self.db.transaction() as session:
            query = select(col(Customer.stripe_customer_id)).where(
                col(Customer.tenant_id) == self.tenant
            )
            return await session.scalar(query)

    async def link_customer(self) -> str:
        """The workspace already has its Stripe customer."""
        customer: str = self.fake.add_customer(metadata={"tenant_id": str(self.tenant)})["id"]
        async with self.db.transaction() as session:
            session.add(Customer(tenant_id=self.tenant, stripe_customer_id=customer))
        return customer

    async def subscribe(self, status: str = "active") -> str:
        """The workspace is on Growth, at Stripe and as its events left it here."""
        customer = await self.link_customer()
        sub: str = self.fake.add_subscription(customer=customer, price=GROWTH_PRICE, status=status)[
            "id"
        ]
        async with self.db.transaction() as session:
            row = Subscription(
                stripe_subscription_id=sub,
                tenant_id=self.tenant,
                stripe_customer_id=customer,
                plan="growth",
                price_id=GROWTH_PRICE,
                status=status,
                cancel_at_period_end=False,
                event_created=1,
            )
            session.add(row)
        return sub


OpenWorkspace = Callable[..., AbstractAsyncContextManager[Workspace]]


@pytest.fixture
async def fake(billing_settings: BillingSettings) -> AsyncIterator[FakeStripe]:
    prices = {plan.stripe_price_id for plan in billing_settings.plans.values()}
    async with stripe_server(prices=prices) as server:
        yield server


@pytest.fixture
def open_workspace(
    billing_settings: BillingSettings,
    fake: FakeStripe,
    signing_key: Ed25519PrivateKey,
    billing_db: Database,
    tenant: UUID,
    identity_for: Headers,
) -> OpenWorkspace:
    """Opens billing wired to the Stripe stand-in, with ``changes`` to its settings, and
    yields the test's workspace as seen through it (one owner for the whole test)."""
    owner = identity_for(tenant, "owner")

    @contextlib.asynccontextmanager
    async def open_(**changes: Any) -> AsyncIterator[Workspace]:
        update = {
            "stripe_api_key": SecretStr(TEST_API_KEY),
            "stripe_api_base": fake.url,
            "stripe_timeout_seconds": 2.0,
            "public_base_url": "https://app.example.test",
        }
        settings = billing_settings.model_copy(update=update | changes)
        async with trusting_client(create_app(settings), signing_key) as http:
            yield Workspace(http, fake, billing_db, tenant, owner, identity_for)

    return open_


@pytest.fixture
async def workspace(open_workspace: OpenWorkspace) -> AsyncIterator[Workspace]:
    async with open_workspace() as opened:
        yield opened


def assert_problem(response: httpx.Response, *, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


async def assert_one_customer_for_every_session(workspace: Workspace) -> None:
    """Stripe holds one customer, it is the one stored, and every Checkout was sold to it."""
    [customer] = workspace.fake.customers
    assert await workspace.stored_customer() == customer
    assert {r.params["customer"] for r in workspace.sent(SESSIONS)} == {customer}


# ---- checkout -------------------------------------------------------------------------------
async def test_checkout_sells_the_plans_price_to_the_workspaces_customer(
    workspace: Workspace, fake: FakeStripe
) -> None:
    response = await workspace.checkout()

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["plan"] == "growth"
    assert body["url"] == fake.checkout_sessions[body["id"]]["url"]
    [customer] = fake.customers
    [sent] = workspace.sent(SESSIONS)
    tenant_id = str(workspace.tenant)
    metadata = {"tenant_id": tenant_id, "plan": "growth"}
    assert sent.params == {
        "mode": "subscription",
        "line_items": [{"price": GROWTH_PRICE, "quantity": "1"}],
        "customer": customer,
        "client_reference_id": tenant_id,
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": "https://app.example.test/billing?checkout=success",
        "cancel_url": "https://app.example.test/billing?checkout=cancelled",
    }
    assert sent.headers["authorization"] == f"Bearer {TEST_API_KEY}"
    assert all(r.idempotency_key for r in fake.received if r.method == "POST")


async def test_the_customer_is_created_once_for_the_workspace_and_stored(
    workspace: Workspace,
) -> None:
    assert (await workspace.checkout("growth")).status_code == 201
    assert (await workspace.checkout("agency")).status_code == 201

    [created] = workspace.sent(CUSTOMERS)
    assert created.idempotency_key == f"bai-customer-{workspace.tenant}"
    assert created.params == {"metadata": {"tenant_id": str(workspace.tenant)}}
    await assert_one_customer_for_every_session(workspace)


async def test_first_checkouts_at_once_share_one_customer(workspace: Workspace) -> None:
    first, second = await asyncio.gather(
        workspace.checkout("growth"), workspace.checkout("starter")
    )

    assert (first.status_code, second.status_code) == (201, 201)
    keys = {r.idempotency_key for r in workspace.sent(CUSTOMERS)}
    assert keys == {f"bai-customer-{workspace.tenant}"}
    await assert_one_customer_for_every_session(workspace)


async def test_a_retried_checkout_with_the_same_client_key_reuses_the_stripe_key(
    workspace: Workspace, fake: FakeStripe
) -> None:
    first = await workspace.checkout(key="order-42")
    again = await workspace.checkout(key="order-42")

    assert first.json() == again.json()
    first_sent, again_sent = workspace.sent(SESSIONS)
    assert first_sent.idempotency_key == again_sent.idempotency_key
    assert first_sent.idempotency_key != "order-42"  # scoped, not the client's own
    assert len(fake.checkout_sessions) == 1


async def test_the_same_client_key_for_another_plan_or_workspace_is_another_request(
    workspace: Workspace, fake: FakeStripe, identity_for: Headers
) -> None:
    growth = await workspace.checkout("growth", key="order-42")
    agency = await workspace.checkout("agency", key="order-42")
    elsewhere = await workspace.checkout(
        "growth", key="order-42", who=identity_for(uuid4(), "owner")
    )

    assert [r.status_code for r in (growth, agency, elsewhere)] == [201, 201, 201]
    keys = {r.idempotency_key for r in workspace.sent(SESSIONS)}
    assert len(keys) == 3
    assert len(fake.checkout_sessions) == 3


async def test_checkouts_without_a_client_key_each_get_a_fresh_stripe_key(
    workspace: Workspace,
) -> None:
    first, second = await workspace.checkout(), await workspace.checkout()

    assert first.json()["id"] != second.json()["id"]
    first_sent, second_sent = workspace.sent(SESSIONS)
    assert first_sent.idempotency_key != second_sent.idempotency_key


async def test_an_unknown_plan_is_422_naming_plan_and_sends_nothing(
    workspace: Workspace, fake: FakeStripe
) -> None:
    response = await workspace.checkout("platinum")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "plan"]
    assert fake.received == []


@pytest.mark.parametrize("status", ["active", "trialing", "past_due"])
async def test_a_subscribed_workspace_is_sent_to_the_portal_to_change_plans(
    workspace: Workspace, fake: FakeStripe, status: str
) -> None:
    await workspace.subscribe(status)

    response = await workspace.checkout("agency")

    assert_problem(response, status=409, code="already_subscribed")
    assert "portal" in response.json()["detail"]
    assert fake.received == []


async def test_a_canceled_subscription_does_not_stop_a_new_checkout(
    workspace: Workspace,
) -> None:
    await workspace.subscribe("canceled")

    response = await workspace.checkout()

    assert response.status_code == 201
    assert workspace.sent(CUSTOMERS) == []  # the known customer is reused


# ---- portal ---------------------------------------------------------------------------------
async def test_the_portal_needs_a_billing_account(workspace: Workspace, fake: FakeStripe) -> None:
    response = await workspace.portal()

    assert_problem(response, status=409, code="no_billing_account")
    assert fake.received == []


async def test_the_portal_opens_for_the_workspaces_customer(
    workspace: Workspace, fake: FakeStripe
) -> None:
    customer = await workspace.link_customer()

    response = await workspace.portal()

    assert response.status_code == 201, response.text
    [portal] = fake.portal_sessions.values()
    assert response.json() == {"url": portal["url"]}
    [sent] = workspace.sent(PORTAL)
    assert sent.params == {"customer": customer, "return_url": "https://app.example.test/billing"}
    assert sent.idempotency_key


# ---- cancel ---------------------------------------------------------------------------------
async def test_cancel_ends_the_subscription_at_period_end_at_stripe_and_here(
    workspace: Workspace, fake: FakeStripe
) -> None:
    sub = await workspace.subscribe()

    response = await workspace.cancel()

    assert response.status_code == 200, response.text
    assert response.json()["cancel_at_period_end"] is True
    assert response.json()["plan"] == "growth"
    assert fake.subscriptions[sub]["cancel_at_period_end"] is True
    [sent] = workspace.sent(f"/v1/subscriptions/{sub}")
    assert sent.params == {"cancel_at_period_end": "true"}
    assert sent.idempotency_key
    async with workspace.db.transaction() as session:
        row = await session.get(Subscription, sub)
        assert row is not None
        assert row.cancel_at_period_end is True
        assert row.event_created == 1  # the confirming event still applies


async def test_cancel_without_an_active_subscription_is_409(
    workspace: Workspace, fake: FakeStripe
) -> None:
    await workspace.subscribe("canceled")

    response = await workspace.cancel()

    assert_problem(response, status=409, code="no_active_subscription")
    assert fake.received == []


# ---- when Stripe fails ----------------------------------------------------------------------
async def test_stripe_failing_to_create_the_customer_is_502_and_stores_nothing(
    workspace: Workspace, fake: FakeStripe
) -> None:
    fake.fail_next(2, path=CUSTOMERS)  # the call and its retry

    response = await workspace.checkout()

    assert_problem(response, status=502, code="stripe_unavailable")
    assert await workspace.stored_customer() is None
    assert workspace.sent(SESSIONS) == []


async def test_a_failed_checkout_keeps_the_customer_stripe_created_for_the_retry(
    workspace: Workspace, fake: FakeStripe
) -> None:
    fake.fail_next(2, path=SESSIONS)  # the call and its retry
    assert (await workspace.checkout()).status_code == 502
    [customer] = fake.customers
    assert await workspace.stored_customer() == customer

    assert (await workspace.checkout()).status_code == 201
    assert len(workspace.sent(CUSTOMERS)) == 1


async def test_a_passing_stripe_500_is_retried_with_the_same_key(
    workspace: Workspace, fake: FakeStripe
) -> None:
    fake.fail_next(1, path=SESSIONS)

    response = await workspace.checkout()

    assert response.status_code == 201
    failed, retried = workspace.sent(SESSIONS)
    assert failed.idempotency_key == retried.idempotency_key
    assert len(fake.checkout_sessions) == 1


async def test_a_stripe_that_does_not_answer_in_time_is_retried_then_502(
    workspace: Workspace, fake: FakeStripe
) -> None:
    fake.hang_next(1, path=SESSIONS)
    assert (await workspace.checkout()).status_code == 201

    fake.hang_next(2, path=SESSIONS)
    response = await workspace.checkout()

    assert_problem(response, status=502, code="stripe_unavailable")


async def test_an_answer_over_the_size_cap_is_502(workspace: Workspace, fake: FakeStripe) -> None:
    fake.oversize_next(1)

    response = await workspace.checkout()

    assert response.status_code == 502
    assert len(fake.received) == 1  # refused, not retried


async def test_a_refused_api_key_is_502_and_never_echoed(
    open_workspace: OpenWorkspace, fake: FakeStripe
) -> None:
    wrong = "sk_test_wrong_key_that_must_stay_secret"
    async with open_workspace(stripe_api_key=SecretStr(wrong)) as workspace:
        response = await workspace.checkout()

    assert response.status_code == 502
    assert "sk_" not in response.text
    assert "secret" not in response.text
    assert fake.customers == {}


async def test_without_an_api_key_billing_is_not_configured(
    open_workspace: OpenWorkspace, fake: FakeStripe
) -> None:
    async with open_workspace(stripe_api_key=SecretStr("")) as workspace:
        answers = [await workspace.checkout(), await workspace.portal(), await workspace.cancel()]

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert {a.json()["code"] for a in answers} == {"billing_not_configured"}
    assert fake.received == []


@pytest.mark.parametrize("role", ["viewer", "editor"])
@pytest.mark.parametrize("path", ["/checkout", "/portal", "/subscription/cancel"])
async def test_only_owners_and_admins_change_billing(
    workspace: Workspace, fake: FakeStripe, role: str, path: str
) -> None:
    await workspace.subscribe()

    response = await workspace.client.post(
        f"/v1/billing{path}", json={"plan": "growth"}, headers=workspace.member(role)
    )

    assert response.status_code == 403
    assert fake.received == []


async def test_an_admin_may_check_out(workspace: Workspace) -> None:
    response = await workspace.checkout(who=workspace.member("admin"))

    assert response.status_code == 201


# ---- reads ----------------------------------------------------------------------------------
async def test_the_plans_are_the_catalogue(workspace: Workspace) -> None:
    response = await workspace.client.get("/v1/billing/plans", headers=workspace.member("viewer"))

    assert response.status_code == 200
    plans = {p["id"]: p for p in response.json()}
    assert set(plans) == {"starter", "growth", "agency"}
    assert plans["growth"]["seats"] == 5
    assert plans["growth"]["monthly_credits"]["posts"] == 500


async def test_a_workspace_without_a_subscription_says_none(workspace: Workspace) -> None:
    response = await workspace.subscription()

    assert response.status_code == 200
    assert response.json()["plan"] is None
    assert response.json()["status"] == "none"


async def test_the_subscription_shown_is_the_live_one(workspace: Workspace) -> None:
    await workspace.subscribe("past_due")

    response = await workspace.subscription(who=workspace.member("viewer"))

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
async def one_connection_workspace(open_workspace: OpenWorkspace) -> AsyncIterator[Workspace]:
    """Billing with a pool of one connection: a request holding it shuts out every other."""
    async with open_workspace(
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_seconds=1.0,
        stripe_timeout_seconds=10.0,  # Stripe's hang lasts until the test releases it
    ) as opened:
        yield opened


@pytest.mark.parametrize(
    ("action", "path"),
    [("checkout", CUSTOMERS), ("checkout", SESSIONS), ("portal", PORTAL), ("cancel", "sub")],
)
async def test_while_stripe_answers_the_database_connection_serves_other_requests(
    one_connection_workspace: Workspace, fake: FakeStripe, action: str, path: str
) -> None:
    workspace = one_connection_workspace
    if action == "portal":
        await workspace.link_customer()
    if action == "cancel":
        path = f"/v1/subscriptions/{await workspace.subscribe()}"
    act = {"checkout": workspace.checkout, "portal": workspace.portal, "cancel": workspace.cancel}
    fake.hang_next(1, path=path)
    call = asyncio.create_task(act[action]())
    async with asyncio.timeout(10):
        while not workspace.sent(path):  # Stripe has the call and holds it
            await asyncio.sleep(0.02)

    meanwhile = await workspace.subscription()
    fake.release_hangs()  # the hung call answers 503; the library's retry goes through

    assert meanwhile.status_code == 200, meanwhile.text
    assert (await call).status_code in (200, 201)
