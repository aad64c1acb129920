"""API keys: made by owners and admins, shown once, scoped, revocable, expiring."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from bai_platform.access import service_audience
from bai_platform.app_state import held
from bai_platform.identity import IDENTITY_HEADER, IdentityVerifier, mint_identity
from gateway.models import ApiKey
from gateway.service.tokens import token_digest
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

from .conftest import Account, assert_problem, forward_auth, identity_headers, sign_up

KEYS = "/v1/auth/api-keys"


async def _identity(
    client: httpx.AsyncClient, bearer: str, uri: str = KEYS, method: str = "GET"
) -> httpx.Response:
    return await forward_auth(client, bearer, uri, method)


async def _as(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    return await identity_headers(client, account.access_token)


async def _create(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    payload = {"name": "n8n publishing", "scopes": ["planner:read", "planner:write"], **body}
    response = await client.post(KEYS, json=payload, headers=await _as(client, account))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _identity_as(app: FastAPI, settings: GatewaySettings, account: Account, role: str) -> str:
    key = held(app, GatewayState).auth.ring.current
    return mint_identity(
        key=key.private_key,
        kid=key.kid,
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        subject=account.user_id,
        tenant_id=account.tenant_id,
        roles=[role],
        scopes=["api"],
        credential="user",
    )


async def test_created_key_is_shown_once_and_listed_without_its_secret(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await _create(client, account)
    assert created["key"].startswith(f"bai_{created['prefix']}_")
    listed = await client.get(KEYS, headers=await _as(client, account))
    [item] = listed.json()["items"]
    assert item["id"] == created["id"]
    assert "key" not in item
    assert created["key"] not in listed.text


async def test_only_the_digest_of_a_key_is_stored(
    client: httpx.AsyncClient, account: Account, db: AsyncEngine
) -> None:
    created = await _create(client, account)
    async with db.connect() as conn:
        stored = await conn.scalar(
            select(col(ApiKey.secret_hash)).where(col(ApiKey.id) == created["id"])
        )
    assert stored == token_digest(created["key"])


async def test_key_gets_an_identity_for_a_route_within_its_scopes(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings, jwks: dict[str, Any]
) -> None:
    created = await _create(client, account, role="viewer", scopes=["planner:read"])
    response = await _identity(client, created["key"], "/v1/planner/campaigns?limit=5")
    assert response.status_code == 200, response.text
    verifier = IdentityVerifier(
        jwks_url="http://service/none",
        issuer=settings.identity_issuer,
        audience=service_audience("planner"),  # minted for the service the path belongs to
        http=client,
    )
    verifier.use_keys(jwks)
    identity = await verifier.verify(response.headers[IDENTITY_HEADER])
    assert identity.tenant_id == UUID(account.tenant_id)
    assert identity.credential == "api_key"
    assert identity.roles == frozenset({"viewer"})
    assert identity.scopes == frozenset({"planner:read"})


@pytest.mark.parametrize(
    ("uri", "method"),
    [
        ("/v1/planner/campaigns", "POST"),  # read-only key writing
        ("/v1/mining/jobs", "GET"),  # another service
        ("/v1/auth/api-keys", "GET"),  # keys never manage keys
        ("/v1/events", "GET"),
    ],
)
async def test_key_outside_its_scopes_is_403(
    client: httpx.AsyncClient, account: Account, uri: str, method: str
) -> None:
    created = await _create(client, account, scopes=["planner:read"])
    response = await _identity(client, created["key"], uri, method)
    assert_problem(response, status=403, code="insufficient_scope")


async def test_revoked_key_is_refused_at_once(client: httpx.AsyncClient, account: Account) -> None:
    created = await _create(client, account)
    assert (await _identity(client, created["key"], "/v1/planner/campaigns")).status_code == 200
    revoked = await client.delete(f"{KEYS}/{created['id']}", headers=await _as(client, account))
    assert revoked.status_code == 204
    response = await _identity(client, created["key"], "/v1/planner/campaigns")
    assert_problem(response, status=401, code="invalid_token")


async def test_expired_key_is_refused(
    client: httpx.AsyncClient, account: Account, db: AsyncEngine
) -> None:
    created = await _create(client, account, expires_in_days=1)
    async with db.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(
            update(ApiKey).where(col(ApiKey.id) == created["id"]).values(expires_at=past)
        )
    response = await _identity(client, created["key"], "/v1/planner/campaigns")
    assert_problem(response, status=401, code="invalid_token")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-4] + "AAAA",  # right prefix, wrong secret
        lambda key: "bai_000000000000_" + key.split("_", 2)[2],  # unknown prefix
        lambda key: "bai_",  # malformed
    ],
)
async def test_wrong_or_malformed_key_is_401(
    client: httpx.AsyncClient, account: Account, mangle: Any
) -> None:
    created = await _create(client, account)
    response = await _identity(client, mangle(created["key"]), "/v1/planner/campaigns")
    assert_problem(response, status=401, code="invalid_token")


async def test_use_is_recorded_as_last_used(
    client: httpx.AsyncClient, account: Account, db: AsyncEngine
) -> None:
    created = await _create(client, account)
    await _identity(client, created["key"], "/v1/planner/campaigns")
    async with db.connect() as conn:
        used = await conn.scalar(
            select(col(ApiKey.last_used_at)).where(col(ApiKey.id) == created["id"])
        )
    assert used is not None


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_only_owners_and_admins_manage_keys(
    client: httpx.AsyncClient,
    account: Account,
    app: FastAPI,
    settings: GatewaySettings,
    role: str,
) -> None:
    headers = {IDENTITY_HEADER: _identity_as(app, settings, account, role)}
    response = await client.post(
        KEYS, json={"name": "x", "scopes": ["planner:read"]}, headers=headers
    )
    assert_problem(response, status=403, code="forbidden")
    assert_problem(await client.get(KEYS, headers=headers), status=403, code="forbidden")


async def test_another_workspaces_key_cannot_be_revoked(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await _create(client, account)
    stranger = await sign_up(client)
    response = await client.delete(f"{KEYS}/{created['id']}", headers=await _as(client, stranger))
    assert_problem(response, status=404, code="api_key_not_found")
    assert (await _identity(client, created["key"], "/v1/planner/campaigns")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": ["planner:admin"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["planner:read"], "role": "owner"},
        {
            "name": "x",
            "scopes": ["planner:read"],
            "tenant_id": "00000000-0000-0000-0000-000000000000",
        },
        {"name": "", "scopes": ["planner:read"]},
    ],
)
async def test_invalid_key_request_is_422_and_creates_nothing(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any]
) -> None:
    headers = await _as(client, account)
    response = await client.post(KEYS, json=body, headers=headers)
    assert_problem(response, status=422, code="validation_failed")
    assert (await client.get(KEYS, headers=headers)).json()["items"] == []


async def test_a_repeated_create_with_an_idempotency_key_never_shows_the_secret_twice(
    client: httpx.AsyncClient, account: Account, db: AsyncEngine
) -> None:
    headers = {**await _as(client, account), "Idempotency-Key": "create-key-1"}
    body = {"name": "once", "scopes": ["planner:read"]}
    first = await client.post(KEYS, json=body, headers=headers)
    again = await client.post(KEYS, json=body, headers=headers)
    assert first.status_code == 201
    assert_problem(again, status=409, code="idempotent_answer_not_kept")
    assert first.json()["key"] not in again.text
    listed = await client.get(KEYS, headers=await _as(client, account))
    assert len(listed.json()["items"]) == 1
    async with db.connect() as conn:
        stored = await conn.execute(text("SELECT response_body FROM gateway.idempotency_keys"))
        assert all(row[0] is None or first.json()["key"].encode() not in row[0] for row in stored)
