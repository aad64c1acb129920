"""Idempotency-Key on creates: the same key and body answer once; another body is 422."""

import asyncio
from collections.abc import Awaitable, Callable
from uuid import UUID, uuid4

import httpx

from planner.models import Campaign

IdentityFor = Callable[[UUID, str], dict[str, str]]
CampaignsOf = Callable[[UUID], Awaitable[list[Campaign]]]
URL = "/v1/planner/campaigns"


def _with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_a_repeat_with_the_same_key_and_body_creates_once_and_answers_the_same(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    headers = _with_key(identity_for(tenant, "editor"), "create-launch-1")
    first = await client.post(URL, json={"brand_id": brand, "name": "Launch"}, headers=headers)
    second = await client.post(URL, json={"brand_id": brand, "name": "Launch"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(await campaigns_of(tenant)) == 1


async def test_the_same_key_with_another_body_is_422_and_creates_nothing_more(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    headers = _with_key(identity_for(tenant, "editor"), "create-launch-2")
    await client.post(URL, json={"brand_id": brand, "name": "Launch"}, headers=headers)
    other = await client.post(URL, json={"brand_id": brand, "name": "Another"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(await campaigns_of(tenant)) == 1


async def test_keys_belong_to_their_tenant(
    client: httpx.AsyncClient,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
    brand_for: Callable[[UUID], Awaitable[str]],
) -> None:
    first, second = uuid4(), uuid4()
    for tenant in (first, second):
        brand = await brand_for(tenant)
        response = await client.post(
            URL,
            json={"brand_id": brand, "name": "Launch"},
            headers=_with_key(identity_for(tenant, "owner"), "shared"),
        )
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert len(await campaigns_of(first)) == 1
    assert len(await campaigns_of(second)) == 1


async def test_concurrent_repeats_create_once(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    headers = _with_key(identity_for(tenant, "editor"), "create-launch-4")
    answers = await asyncio.gather(
        *(
            client.post(URL, json={"brand_id": brand, "name": "Launch"}, headers=headers)
            for _ in range(5)
        )
    )
    assert {a.status_code for a in answers} <= {201, 409}
    assert len(await campaigns_of(tenant)) == 1


async def test_a_refused_request_does_not_use_up_its_key(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    headers = _with_key(identity_for(tenant, "editor"), "create-launch-3")
    refused = await client.post(URL, json={"brand_id": brand, "name": ""}, headers=headers)
    assert refused.status_code == 422
    corrected = await client.post(URL, json={"brand_id": brand, "name": "Launch"}, headers=headers)
    assert corrected.status_code == 201


async def test_without_a_key_every_request_creates(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    headers = identity_for(tenant, "editor")
    await asyncio.gather(
        *(
            client.post(URL, json={"brand_id": brand, "name": "Launch"}, headers=headers)
            for _ in range(2)
        )
    )
    assert len(await campaigns_of(tenant)) == 2
