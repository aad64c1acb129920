"""Signup: a workspace, its owner, tokens, and the TenantCreated event, in one transaction."""

import asyncio
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from bai_contracts import TenantCreated
from bai_platform.envelope import Envelope
from gateway.models import Tenant, User, outbox
from gateway.settings import GatewaySettings

from .conftest import PASSWORD, Account, assert_problem, unique_email, unique_workspace


async def _users_with_email(db: AsyncEngine, email: str) -> int:
    async with db.connect() as conn:
        count = await conn.scalar(select(func.count()).where(col(User.email) == email))
    return int(count or 0)


async def _tenants_named(db: AsyncEngine, name: str) -> int:
    async with db.connect() as conn:
        count = await conn.scalar(select(func.count()).where(col(Tenant.name) == name))
    return int(count or 0)


async def _tenant_events(db: AsyncEngine, tenant_id: str) -> list[tuple[Envelope, str]]:
    """The TenantCreated envelopes in the outbox for this tenant, with each row's xmin."""
    query = select(outbox.c.payload, text("gateway.outbox.xmin::text")).where(
        outbox.c.subject == TenantCreated.subject
    )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    events = [(Envelope.model_validate_json(payload), xmin) for payload, xmin in rows]
    return [(event, xmin) for event, xmin in events if event.tenantid == tenant_id]


async def test_signup_answers_201_with_tokens_for_the_new_workspace(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    response = await client.post(
        "/v1/auth/signup",
        json={"email": unique_email(), "password": PASSWORD, "workspace": "Acme Coffee"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "tenant_id",
        "user_id",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    assert body["refresh_token"].startswith("rt_")
    assert UUID(body["tenant_id"]) != UUID(body["user_id"])
    assert response.headers["cache-control"] == "no-store"


async def test_signup_access_token_is_an_eddsa_at_jwt_signed_by_a_published_key(
    account: Account, jwks: dict[str, Any]
) -> None:
    header = jwt.get_unverified_header(account.access_token)
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}


async def test_signup_access_token_verifies_with_the_jwks_and_names_the_owner(
    account: Account, jwks: dict[str, Any], settings: GatewaySettings
) -> None:
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims = jwt.decode(
        account.access_token,
        key,
        algorithms=["EdDSA"],
        audience=settings.token_audience,
        issuer=settings.token_issuer,
    )
    assert claims["sub"] == account.user_id
    assert claims["tid"] == account.tenant_id
    assert claims["roles"] == ["owner"]
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds


async def test_duplicate_email_is_409_email_taken(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/v1/auth/signup",
        json={"email": account.email, "password": PASSWORD, "workspace": unique_workspace()},
    )
    assert_problem(response, status=409, code="email_taken")


async def test_duplicate_email_creates_no_user_tenant_or_event(
    client: httpx.AsyncClient, account: Account, db: AsyncEngine
) -> None:
    workspace = unique_workspace()
    response = await client.post(
        "/v1/auth/signup",
        json={"email": account.email, "password": PASSWORD, "workspace": workspace},
    )
    assert response.status_code == 409
    assert await _users_with_email(db, account.email) == 1
    assert await _tenants_named(db, workspace) == 0
    async with db.connect() as conn:
        events = (await conn.execute(select(outbox.c.payload))).scalars().all()
    assert not any(workspace.encode() in payload for payload in events)


async def test_email_differing_only_in_case_is_taken(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/v1/auth/signup",
        json={"email": account.email.upper(), "password": PASSWORD, "workspace": "Other"},
    )
    assert_problem(response, status=409, code="email_taken")


async def test_email_is_stored_in_lower_case(client: httpx.AsyncClient, db: AsyncEngine) -> None:
    email = unique_email("Mixed.Case")
    response = await client.post(
        "/v1/auth/signup",
        json={"email": email.upper(), "password": PASSWORD, "workspace": unique_workspace()},
    )
    assert response.status_code == 201, response.text
    assert await _users_with_email(db, email.lower()) == 1


async def test_concurrent_signups_with_one_email_create_one_account(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    email = unique_email()
    bodies = [
        {"email": email, "password": PASSWORD, "workspace": unique_workspace()} for _ in range(2)
    ]
    responses = await asyncio.gather(
        *(client.post("/v1/auth/signup", json=body) for body in bodies)
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    assert await _users_with_email(db, email) == 1
    losing = next(r for r in responses if r.status_code == 409)
    assert_problem(losing, status=409, code="email_taken")


@pytest.mark.parametrize("password", ["Tiny9pw!", "NineChar9"])
async def test_short_password_is_422_without_echoing_it(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post(
        "/v1/auth/signup",
        json={"email": unique_email(), "password": password, "workspace": unique_workspace()},
    )
    body = assert_problem(response, status=422, code="validation_failed")
    assert ["body", "password"] in [error["loc"] for error in body["errors"]]
    assert password not in response.text


@pytest.mark.parametrize("missing", ["email", "password", "workspace"])
async def test_missing_field_is_422_without_echoing_the_password(
    client: httpx.AsyncClient, missing: str
) -> None:
    fields = {"email": unique_email(), "password": PASSWORD, "workspace": unique_workspace()}
    del fields[missing]
    response = await client.post("/v1/auth/signup", json=fields)
    body = assert_problem(response, status=422, code="validation_failed")
    assert ["body", missing] in [error["loc"] for error in body["errors"]]
    assert PASSWORD not in response.text


async def test_invalid_email_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/signup",
        json={"email": "not-an-email", "password": PASSWORD, "workspace": unique_workspace()},
    )
    assert_problem(response, status=422, code="validation_failed")


@pytest.mark.parametrize("field", ["tenant_id", "role", "user_id"])
async def test_unknown_field_is_refused_and_creates_nothing(
    client: httpx.AsyncClient, db: AsyncEngine, field: str
) -> None:
    email = unique_email()
    response = await client.post(
        "/v1/auth/signup",
        json={
            "email": email,
            "password": PASSWORD,
            "workspace": unique_workspace(),
            field: "admin",
        },
    )
    body = assert_problem(response, status=422, code="validation_failed")
    assert ["body", field] in [error["loc"] for error in body["errors"]]
    assert await _users_with_email(db, email) == 0


async def test_signup_writes_one_tenant_created_event_to_the_outbox(
    account: Account, db: AsyncEngine
) -> None:
    events = await _tenant_events(db, account.tenant_id)
    assert len(events) == 1
    envelope, _ = events[0]
    assert envelope.source == "gateway"
    payload = envelope.payload(TenantCreated)
    assert str(payload.tenant_id) == account.tenant_id
    assert str(payload.owner_user_id) == account.user_id
    assert payload.name == account.workspace


async def test_tenant_created_event_is_written_in_the_signup_transaction(
    account: Account, db: AsyncEngine
) -> None:
    [(_, event_xmin)] = await _tenant_events(db, account.tenant_id)
    async with db.connect() as conn:
        tenant_xmin = await conn.scalar(
            select(text("gateway.tenants.xmin::text")).where(
                col(Tenant.id) == UUID(account.tenant_id)
            )
        )
        user_xmin = await conn.scalar(
            select(text("gateway.users.xmin::text")).where(col(User.id) == UUID(account.user_id))
        )
    assert event_xmin == tenant_xmin == user_xmin


async def test_workspace_name_with_a_nul_character_is_422_and_creates_nothing(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    email = unique_email()
    response = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "workspace": "Acme\x00"}
    )
    assert_problem(response, status=422, code="validation_failed")
    assert await _users_with_email(db, email) == 0
