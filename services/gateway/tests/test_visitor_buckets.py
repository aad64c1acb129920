"""Website chat visitors are counted in buckets of their own, never in their workspace's.

A visitor flood must not lock the team out, and a fresh visitor id per token must not buy
fresh quota: visitor tokens are rationed per client IP and per widget where they are minted.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from bai_contracts import WIDGET_LOOKUP_SUBJECT
from bai_platform.app_state import held
from bai_platform.devstack import Stack
from gateway.app import create_app
from gateway.service.ratelimit import Quota, RateLimitSettings
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

from .conftest import SHOP, Creator, assert_problem, forward_auth, serve_widgets, sign_up

UNLIMITED = Quota(limit=1_000_000)
# Only this module answers here, so a real creator (or another module's stand-in) never does.
LOOKUP_SUBJECT = WIDGET_LOOKUP_SUBJECT.replace(".creator.", ".buckettest.")
CHAT_URI = "/v1/creator/chat/conversations"
FLOOD_CAP = 50


@dataclass
class ChatEdge:
    """A gateway of its own with tuned quotas, and creator's stand-in for its widgets."""

    app: FastAPI
    creator: Creator

    @asynccontextmanager
    async def client(self, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
        """A client that reaches the gateway from ``address``."""
        transport = httpx.ASGITransport(app=self.app, client=(address, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


@asynccontextmanager
async def chat_edge(
    settings: GatewaySettings, stack: Stack, **limits: Any
) -> AsyncIterator[ChatEdge]:
    quotas = {"ip_auth": UNLIMITED, "ip_public": UNLIMITED, **limits}
    tuned = settings.model_copy(update={"rate_limits": RateLimitSettings(**quotas)})
    app = create_app(tuned)
    async with app.router.lifespan_context(app):
        held(app, GatewayState).widgets.subject = LOOKUP_SUBJECT
        async with serve_widgets(stack.nats_url, LOOKUP_SUBJECT, "buckettest-widgets") as creator:
            async with asyncio.timeout(10):
                while not held(app, GatewayState).callbacks.connected:
                    await asyncio.sleep(0.05)
            yield ChatEdge(app, creator)


async def _mint(client: httpx.AsyncClient, key: str, **extra: Any) -> httpx.Response:
    body = {"widget_key": key, **extra}
    return await client.post("/v1/chat/visitor-token", json=body, headers={"Origin": SHOP})


async def _visitor_token(client: httpx.AsyncClient, key: str) -> str:
    response = await _mint(client, key)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def _chat(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(
        "/auth/verify",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Forwarded-Uri": CHAT_URI,
            "X-Forwarded-Method": "POST",
            "Origin": SHOP,
        },
    )


async def _hammer(client: httpx.AsyncClient, token: str) -> list[int]:
    """Chat with this token until the edge says 429 (or the cap, which a test then fails)."""
    statuses: list[int] = []
    while len(statuses) < FLOOD_CAP and 429 not in statuses:
        statuses.append((await _chat(client, token)).status_code)
    return statuses


async def test_a_visitor_flood_leaves_the_owner_served(
    settings: GatewaySettings, migrated: Stack
) -> None:
    limits = {
        "credential": UNLIMITED,
        "tenant_plans": {"starter": Quota(limit=10)},
        "visitor": Quota(limit=5),
        "widget": Quota(limit=12),
    }
    async with chat_edge(settings, migrated, **limits) as edge, edge.client() as client:
        owner = await sign_up(client)
        key, _ = edge.creator.widget(tenant=owner.tenant_id)
        tokens = [await _visitor_token(client, key) for _ in range(3)]
        floods = await asyncio.gather(*(_hammer(client, token) for token in tokens))
        served = [await forward_auth(client, owner.access_token, "/v1/planner/campaigns")]
    assert all(flood[-1] == 429 for flood in floods), floods
    assert [answer.status_code for answer in served] == [200]
    assert served[0].headers["ratelimit-policy"] == '"tenant";q=10;w=60'


async def test_each_visitor_has_a_bucket_of_their_own(
    settings: GatewaySettings, migrated: Stack
) -> None:
    async with (
        chat_edge(settings, migrated, visitor=Quota(limit=3)) as edge,
        edge.client() as client,
    ):
        key, _ = edge.creator.widget()
        first, second = await _visitor_token(client, key), await _visitor_token(client, key)
        answers = [await _chat(client, first) for _ in range(4)]
        other = await _chat(client, second)
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    denied = assert_problem(answers[3], status=429, code="rate_limited")
    assert "visitor" in denied["detail"]
    assert answers[3].headers["ratelimit-policy"] == '"visitor";q=3;w=60'
    assert 1 <= int(answers[3].headers["retry-after"]) <= 60
    assert other.status_code == 200


async def test_all_visitors_of_a_widget_share_one_bucket(
    settings: GatewaySettings, migrated: Stack
) -> None:
    async with (
        chat_edge(settings, migrated, widget=Quota(limit=4)) as edge,
        edge.client() as client,
    ):
        key, _ = edge.creator.widget()
        other_key, _ = edge.creator.widget()
        visitors = [await _visitor_token(client, key) for _ in range(5)]
        answers = [await _chat(client, token) for token in visitors]
        elsewhere = await _chat(client, await _visitor_token(client, other_key))
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429]
    assert answers[4].headers["ratelimit-policy"] == '"widget";q=4;w=60'
    assert elsewhere.status_code == 200


async def test_minting_visitor_tokens_is_limited_per_client_ip(
    settings: GatewaySettings, migrated: Stack
) -> None:
    quota = Quota(limit=2, window_seconds=3600)
    async with chat_edge(settings, migrated, visitor_token_ip=quota) as edge:
        key, _ = edge.creator.widget()
        async with edge.client("203.0.113.7") as client:
            first = await _mint(client, key)
            # Naming a visitor id (a returning visitor, or an invented one) counts the same.
            answers = [await _mint(client, key, visitor_id=first.json()["visitor_id"])]
            answers.append(await _mint(client, key))
        async with edge.client("198.51.100.9") as neighbour:
            elsewhere = await _mint(neighbour, key)
    assert [first.status_code, *(a.status_code for a in answers)] == [201, 201, 429]
    denied = assert_problem(answers[1], status=429, code="rate_limited")
    assert "visitor-token-ip" in denied["detail"]
    assert 1 <= int(answers[1].headers["retry-after"]) <= 3600
    # The widget on the page may read why, and when to come back.
    assert answers[1].headers["access-control-allow-origin"] == SHOP
    assert "Retry-After" in answers[1].headers["access-control-expose-headers"]
    assert elsewhere.status_code == 201


async def test_minting_visitor_tokens_is_limited_per_widget(
    settings: GatewaySettings, migrated: Stack
) -> None:
    quota = Quota(limit=2, window_seconds=3600)
    async with chat_edge(settings, migrated, visitor_token_widget=quota) as edge:
        key, _ = edge.creator.widget()
        other_key, _ = edge.creator.widget()
        answers = []
        for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            async with edge.client(address) as client:
                answers.append(await _mint(client, key))
        async with edge.client("203.0.113.3") as client:
            other = await _mint(client, other_key)
    assert [answer.status_code for answer in answers] == [201, 201, 429]
    assert answers[2].headers["ratelimit-policy"] == '"visitor-token-widget";q=2;w=3600'
    assert other.status_code == 201


async def test_behind_a_trusted_proxy_each_forwarded_client_mints_on_its_own_quota(
    settings: GatewaySettings, migrated: Stack
) -> None:
    # The local stack's Traefik is on loopback, which the gateway trusts by default.
    quota = Quota(limit=2, window_seconds=3600)
    async with chat_edge(settings, migrated, visitor_token_ip=quota) as edge:
        key, _ = edge.creator.widget()
        async with edge.client("127.0.0.1") as proxy:
            first = [await _mint_for(proxy, key, "198.51.100.20") for _ in range(3)]
            second = await _mint_for(proxy, key, "198.51.100.21")
    assert [answer.status_code for answer in first] == [201, 201, 429]
    assert second.status_code == 201


async def _mint_for(proxy: httpx.AsyncClient, key: str, client: str) -> httpx.Response:
    return await proxy.post(
        "/v1/chat/visitor-token",
        json={"widget_key": key},
        headers={"Origin": SHOP, "X-Forwarded-For": client},
    )
