"""Planner applies the access rule itself: an identity that reaches it without the gateway
is held to what the gateway would have allowed (credential type, scopes, visitor paths,
workspace role), and only identities minted for planner are accepted at all."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bai_platform.identity import IDENTITY_HEADER, mint_identity
from bai_testing.plugin import TEST_KID
from planner.models import Campaign

CampaignsOf = Callable[[UUID], Awaitable[list[Campaign]]]

URL = "/v1/planner/campaigns"


def _headers(key: Ed25519PrivateKey, tenant: UUID, **overrides: Any) -> dict[str, str]:
    claims: dict[str, Any] = {
        "kid": TEST_KID,
        "issuer": "bai-gateway",
        "audience": "bai-planner",
        "subject": "user-1",
        "tenant_id": tenant,
        "roles": ["owner"],
        "scopes": ["api"],
        "credential": "user",
        **overrides,
    }
    return {IDENTITY_HEADER: mint_identity(key=key, **claims)}


def _visitor(key: Ed25519PrivateKey, tenant: UUID) -> dict[str, str]:
    return _headers(
        key,
        tenant,
        subject="visitor:00000000-0000-0000-0000-000000000001:vis_0123456789abcdef",
        roles=["visitor"],
        scopes=["chat"],
        credential="visitor",
    )


def _read_only_key(key: Ed25519PrivateKey, tenant: UUID) -> dict[str, str]:
    return _headers(
        key,
        tenant,
        subject="key:1",
        roles=["editor"],
        scopes=["planner:read"],
        credential="api_key",
    )


def _code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    code: str = response.json()["code"]
    return code


async def test_an_owner_identity_minted_for_planner_creates_a_campaign(
    client: httpx.AsyncClient, tenant: UUID, brand: str, signing_key: Ed25519PrivateKey
) -> None:
    body = {"name": "Spring sale", "brand_id": brand}

    response = await client.post(URL, json=body, headers=_headers(signing_key, tenant))

    assert response.status_code == 201, response.text


async def test_a_visitor_identity_reading_campaigns_directly_is_403(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    response = await client.get(URL, headers=_visitor(signing_key, tenant))

    assert response.status_code == 403, response.text
    assert _code(response) == "visitor_not_allowed_here"


async def test_a_read_only_key_identity_reads_campaigns(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    response = await client.get(URL, headers=_read_only_key(signing_key, tenant))

    assert response.status_code == 200, response.text


async def test_a_read_only_key_identity_posting_a_campaign_is_403_and_writes_nothing(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    signing_key: Ed25519PrivateKey,
    campaigns_of: CampaignsOf,
) -> None:
    body = {"name": "Spring sale", "brand_id": brand}

    response = await client.post(URL, json=body, headers=_read_only_key(signing_key, tenant))

    assert response.status_code == 403, response.text
    assert _code(response) == "insufficient_scope"
    assert await campaigns_of(tenant) == []


async def test_a_key_identity_claiming_full_access_is_403(
    client: httpx.AsyncClient, tenant: UUID, brand: str, signing_key: Ed25519PrivateKey
) -> None:
    headers = _headers(signing_key, tenant, subject="key:1", roles=["editor"], credential="api_key")

    response = await client.post(URL, json={"name": "x", "brand_id": brand}, headers=headers)

    assert response.status_code == 403, response.text
    assert _code(response) == "insufficient_scope"


async def test_an_identity_without_a_workspace_role_is_403(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    response = await client.get(URL, headers=_headers(signing_key, tenant, roles=[]))

    assert response.status_code == 403, response.text
    assert _code(response) == "no_workspace_role"


async def test_an_identity_of_an_unknown_credential_type_is_403(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    response = await client.get(URL, headers=_headers(signing_key, tenant, credential="robot"))

    assert response.status_code == 403, response.text
    assert _code(response) == "unknown_credential"


async def test_an_identity_minted_for_creator_is_401_at_planner(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    headers = _headers(signing_key, tenant, audience="bai-creator")

    response = await client.get(URL, headers=headers)

    assert response.status_code == 401, response.text
    assert _code(response) == "unauthorized"
