"""Callers are known only through a valid ``X-BAI-Identity``; anything else is 401."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bai_platform.identity import IDENTITY_HEADER, IDENTITY_TYP, mint_identity
from planner.models import Campaign

CampaignsOf = Callable[[UUID], Awaitable[list[Campaign]]]

URL = "/v1/planner/campaigns"
BODY = {"name": "Spring sale"}


def token(key: Ed25519PrivateKey, tenant: UUID, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "kid": "test",
        "issuer": "bai-gateway",
        "audience": "bai-planner",
        "subject": "user-1",
        "tenant_id": tenant,
        "roles": ["owner"],
        "scopes": ["api"],
        "credential": "user",
        **overrides,
    }
    return mint_identity(key=key, **claims)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_valid_identity_is_accepted(
    client: httpx.AsyncClient, tenant: UUID, brand: str, signing_key: Ed25519PrivateKey
) -> None:
    headers = {IDENTITY_HEADER: token(signing_key, tenant)}

    response = await client.post(URL, json={**BODY, "brand_id": brand}, headers=headers)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_request_without_identity_is_401(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, URL, json=BODY if method == "POST" else None)

    assert_unauthorized(response)


async def test_a_bearer_token_instead_of_the_identity_header_is_401(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    headers = {"Authorization": f"Bearer {token(signing_key, tenant)}"}

    response = await client.get(URL, headers=headers)

    assert_unauthorized(response)


async def test_an_identity_signed_by_another_key_is_401_and_writes_nothing(
    client: httpx.AsyncClient, tenant: UUID, campaigns_of: CampaignsOf
) -> None:
    forged = token(Ed25519PrivateKey.generate(), tenant)

    response = await client.post(URL, json=BODY, headers={IDENTITY_HEADER: forged})

    assert_unauthorized(response)
    assert await campaigns_of(tenant) == []


async def test_an_expired_identity_is_401_and_writes_nothing(
    client: httpx.AsyncClient,
    tenant: UUID,
    signing_key: Ed25519PrivateKey,
    campaigns_of: CampaignsOf,
) -> None:
    expired = token(signing_key, tenant, ttl_seconds=-60)

    response = await client.post(URL, json=BODY, headers={IDENTITY_HEADER: expired})

    assert_unauthorized(response)
    assert await campaigns_of(tenant) == []


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"audience": "someone-else"}, id="wrong-audience"),
        pytest.param({"issuer": "not-the-gateway"}, id="wrong-issuer"),
        pytest.param({"kid": "unknown"}, id="unknown-kid"),
        pytest.param({"tenant_id": "not-a-uuid"}, id="tenant-not-a-uuid"),
    ],
)
async def test_an_identity_with_a_wrong_claim_is_401(
    client: httpx.AsyncClient,
    tenant: UUID,
    signing_key: Ed25519PrivateKey,
    campaigns_of: CampaignsOf,
    overrides: dict[str, Any],
) -> None:
    bad = token(signing_key, tenant, **overrides)

    response = await client.post(URL, json=BODY, headers={IDENTITY_HEADER: bad})

    assert_unauthorized(response)
    assert await campaigns_of(tenant) == []


async def test_an_unsigned_identity_is_401(client: httpx.AsyncClient, tenant: UUID) -> None:
    claims = {"iss": "bai-gateway", "aud": "bai-planner", "sub": "user-1", "tid": str(tenant)}
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"typ": IDENTITY_TYP})

    response = await client.get(URL, headers={IDENTITY_HEADER: unsigned})

    assert_unauthorized(response)


async def test_a_tampered_identity_is_401(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    header, _, signature = token(signing_key, tenant).split(".")
    other_claims = token(Ed25519PrivateKey.generate(), tenant, roles=["owner", "admin"])
    tampered = ".".join([header, other_claims.split(".")[1], signature])

    response = await client.get(URL, headers={IDENTITY_HEADER: tampered})

    assert_unauthorized(response)


async def test_a_malformed_identity_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, headers={IDENTITY_HEADER: "not.a.jwt"})

    assert_unauthorized(response)
