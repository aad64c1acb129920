"""Refresh: every use rotates the token; a reused token revokes its whole family."""

import asyncio

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from gateway.models import RefreshToken
from gateway.service.tokens import token_digest

from .conftest import PASSWORD, Account, assert_problem


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def _rotated(client: httpx.AsyncClient, token: str) -> str:
    response = await _refresh(client, token)
    assert response.status_code == 200, response.text
    rotated: str = response.json()["refresh_token"]
    return rotated


async def test_refresh_issues_new_tokens_for_the_same_user_and_workspace(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await _refresh(client, account.refresh_token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user_id"], body["tenant_id"]) == (account.user_id, account.tenant_id)
    assert body["refresh_token"] != account.refresh_token
    assert body["access_token"] != account.access_token
    assert response.headers["cache-control"] == "no-store"


async def test_refreshed_access_token_passes_forward_auth(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await _refresh(client, account.refresh_token)
    access = response.json()["access_token"]
    verified = await client.get("/auth/verify", headers={"Authorization": f"Bearer {access}"})
    assert verified.status_code == 200, verified.text


async def test_a_used_refresh_token_is_refused_as_reused(
    client: httpx.AsyncClient, account: Account
) -> None:
    await _rotated(client, account.refresh_token)
    response = await _refresh(client, account.refresh_token)
    assert_problem(response, status=401, code="refresh_token_reused")


async def test_reuse_revokes_the_newest_token_of_the_family(
    client: httpx.AsyncClient, account: Account
) -> None:
    second = await _rotated(client, account.refresh_token)
    newest = await _rotated(client, second)
    assert (await _refresh(client, account.refresh_token)).status_code == 401
    response = await _refresh(client, newest)
    assert_problem(response, status=401, code="invalid_token")


async def test_reuse_leaves_the_users_other_sessions_alone(
    client: httpx.AsyncClient, account: Account
) -> None:
    login = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    other_session = login.json()["refresh_token"]
    await _rotated(client, account.refresh_token)
    assert (await _refresh(client, account.refresh_token)).status_code == 401
    response = await _refresh(client, other_session)
    assert response.status_code == 200, response.text


async def test_concurrent_refreshes_of_one_token_let_only_one_through(
    client: httpx.AsyncClient, account: Account
) -> None:
    responses = await asyncio.gather(*(_refresh(client, account.refresh_token) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [200, 401]
    winner = next(r for r in responses if r.status_code == 200)
    # The second use counts as reuse: the winner's new token is revoked with the family.
    assert (await _refresh(client, winner.json()["refresh_token"])).status_code == 401


async def test_unknown_refresh_token_is_401_invalid_token(client: httpx.AsyncClient) -> None:
    response = await _refresh(client, "rt_" + "x" * 43)
    assert_problem(response, status=401, code="invalid_token")


async def test_expired_refresh_token_is_401_invalid_token(
    client: httpx.AsyncClient, account: Account, db: AsyncEngine
) -> None:
    async with db.begin() as conn:
        result = await conn.execute(
            update(RefreshToken)
            .where(col(RefreshToken.token_hash) == token_digest(account.refresh_token))
            .values(expires_at=col(RefreshToken.created_at))
        )
    assert result.rowcount == 1
    response = await _refresh(client, account.refresh_token)
    assert_problem(response, status=401, code="invalid_token")


async def test_refresh_with_an_unknown_field_is_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/v1/auth/refresh",
        json={"refresh_token": account.refresh_token, "tenant_id": account.tenant_id},
    )
    assert_problem(response, status=422, code="validation_failed")
    assert account.refresh_token not in response.text
