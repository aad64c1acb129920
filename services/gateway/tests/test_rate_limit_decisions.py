"""ForwardAuth and the public auth routes count requests; the answers carry the fields."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import httpx
from pydantic import SecretStr

from bai_contracts import SubscriptionChanged
from bai_platform.db import Database
from bai_platform.envelope import new_event
from bai_testing.plugin import app_client
from gateway.app import create_app
from gateway.events import on_subscription_changed
from gateway.service.ratelimit import Quota, RateLimitSettings
from gateway.settings import GatewaySettings

from .conftest import PASSWORD, Account, assert_problem, forward_auth, sign_up

UNLIMITED = Quota(limit=1_000_000)
Client = Callable[..., Any]


@asynccontextmanager
async def gateway_with(
    settings: GatewaySettings, **limits: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway app of its own, with these rate-limit settings."""
    tuned = settings.model_copy(update={"rate_limits": RateLimitSettings(**limits)})
    async with app_client(create_app(tuned)) as client:
        yield client


async def _hits(client: httpx.AsyncClient, token: str, count: int) -> list[httpx.Response]:
    return [await forward_auth(client, token, "/v1/planner/campaigns") for _ in range(count)]


async def test_an_allowed_decision_carries_the_ietf_fields(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await forward_auth(client, account.access_token, "/v1/planner/campaigns")
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"].startswith('"credential";q=600;w=60')
    assert response.headers["ratelimit"].startswith('"credential";r=')


async def test_exactly_the_tenant_quota_passes_then_429_with_retry_after(
    settings: GatewaySettings,
) -> None:
    tenant_quota = {"starter": Quota(limit=5)}
    async with gateway_with(settings, ip_auth=UNLIMITED, tenant_plans=tenant_quota) as client:
        account = await sign_up(client)
        answers = await _hits(client, account.access_token, 6)
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["ratelimit"] for a in answers[:5]] == [
        f'"tenant";r={n};t=60' for n in (4, 3, 2, 1, 0)
    ]
    denied = assert_problem(answers[5], status=429, code="rate_limited")
    assert "tenant" in denied["detail"]
    assert 1 <= int(answers[5].headers["retry-after"]) <= 60
    assert answers[5].headers["ratelimit-policy"] == '"tenant";q=5;w=60'


async def test_the_credential_quota_counts_each_credential_apart(
    settings: GatewaySettings,
) -> None:
    async with gateway_with(settings, ip_auth=UNLIMITED, credential=Quota(limit=2)) as client:
        first, second = await sign_up(client), await sign_up(client)
        assert [a.status_code for a in await _hits(client, first.access_token, 3)] == [
            200,
            200,
            429,
        ]
        assert (await forward_auth(client, second.access_token, "/v1/planner/x")).status_code == 200


async def test_the_tenant_tier_follows_the_plan_billing_announces(
    settings: GatewaySettings,
) -> None:
    plans = {"starter": Quota(limit=50), "growth": Quota(limit=500)}
    async with gateway_with(
        settings, ip_auth=UNLIMITED, credential=UNLIMITED, tenant_plans=plans
    ) as client:
        account = await sign_up(client)
        await _announce(settings, account.tenant_id, plan="growth", changed_at=2.0)
        await _announce(settings, account.tenant_id, plan="starter", changed_at=1.0)  # late
        fresh = await _login(client, account)
        response = await forward_auth(client, fresh, "/v1/planner/campaigns")
    assert response.headers["ratelimit-policy"] == '"tenant";q=500;w=60'


async def test_the_auth_routes_count_per_client_ip(settings: GatewaySettings) -> None:
    async with gateway_with(settings, ip_auth=Quota(limit=3)) as client:
        body = {"email": "nobody@example.com", "password": "wrong password!"}
        answers = [await client.post("/v1/auth/login", json=body) for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[0].headers["ratelimit-policy"] == '"ip-auth";q=3;w=60'
    assert "retry-after" in answers[3].headers


async def test_store_down_and_fail_closed_is_503_not_429(settings: GatewaySettings) -> None:
    dead = SecretStr("valkey://127.0.0.1:9/0")
    async with gateway_with(settings, ip_auth=UNLIMITED) as healthy:
        account = await sign_up(healthy)
    async with gateway_with(settings, storage_url=dead, fail_open=False) as client:
        response = await forward_auth(client, account.access_token, "/v1/planner/campaigns")
    assert_problem(response, status=503, code="rate_limit_store_unavailable")


async def test_store_down_and_fail_open_lets_requests_through(settings: GatewaySettings) -> None:
    dead = SecretStr("valkey://127.0.0.1:9/0")
    async with gateway_with(settings, ip_auth=UNLIMITED) as healthy:
        account = await sign_up(healthy)
    async with gateway_with(settings, storage_url=dead, fail_open=True) as client:
        response = await forward_auth(client, account.access_token, "/v1/planner/campaigns")
    assert response.status_code == 200
    assert "ratelimit" not in response.headers  # nothing was counted
    assert response.headers["ratelimit-policy"].startswith('"')


async def _login(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    token: str = response.json()["access_token"]
    return token


async def _announce(
    settings: GatewaySettings, tenant_id: str, *, plan: str, changed_at: float
) -> None:
    """Apply billing's event as the gateway worker does."""
    event = SubscriptionChanged(plan=plan, status="active", changed_at=changed_at)
    database = Database(settings)
    apply: Callable[..., Awaitable[None]] = on_subscription_changed
    try:
        async with database.transaction() as session:
            await apply(session, new_event(event, source="billing", tenant_id=UUID(tenant_id)))
    finally:
        await database.dispose()
