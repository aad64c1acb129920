"""Through the edge of the running stack: login, refresh and its reuse, API keys,
and a signing-key rotation that logs nobody out."""

import asyncio
import os
import subprocess
import sys

import httpx
import jwt
import pytest

from bai_platform.devstack import Stack

from .conftest import Account, new_brand, sign_up

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


async def test_login_refresh_and_reuse_revoking_the_family(
    edge: httpx.AsyncClient, account: Account
) -> None:
    login = await edge.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert login.status_code == 200
    first = login.json()["refresh_token"]
    rotated = await edge.post("/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    reused = await edge.post("/v1/auth/refresh", json={"refresh_token": first})
    assert reused.json()["code"] == "refresh_token_reused"
    newest = await edge.post(
        "/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert newest.status_code == 401  # the whole family went with the reuse


async def test_api_key_create_use_and_revoke(edge: httpx.AsyncClient, account: Account) -> None:
    created = await edge.post(
        "/v1/auth/api-keys",
        headers=account.headers,
        json={"name": "n8n", "scopes": ["planner:read", "planner:write"]},
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    brand_id = await new_brand(edge, account)
    body = {"brand_id": brand_id, "name": "By key"}
    made = await edge.post("/v1/planner/campaigns", json=body, headers=key)
    assert made.status_code == 201
    assert (await edge.get("/v1/mining/jobs", headers=key)).status_code == 403
    revoked = await edge.delete(
        f"/v1/auth/api-keys/{created.json()['id']}", headers=account.headers
    )
    assert revoked.status_code == 204
    assert (await edge.get("/v1/planner/campaigns", headers=key)).status_code == 401


async def test_rotation_through_the_running_stack_logs_nobody_out(
    system: Stack, edge: httpx.AsyncClient, account: Account
) -> None:
    env = {**os.environ, "BAI_DATABASE_URL": system.database_url("gateway")}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "rotate-signing-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    new_kid = result.stdout.split("new signing key ")[1].split(";")[0]
    async with asyncio.timeout(10):  # the test stack reloads keys every 2 s
        while new_kid not in str((await edge.get("/.well-known/jwks.json")).json()):
            await asyncio.sleep(0.2)
    # The old token still works, through the gateway and the planner alike.
    assert (await edge.get("/v1/planner/campaigns", headers=account.headers)).status_code == 200
    async with asyncio.timeout(15):  # then new tokens come signed with the new key
        while True:
            fresh = await sign_up(edge)
            if jwt.get_unverified_header(fresh.token)["kid"] == new_kid:
                break
            await asyncio.sleep(0.5)
    assert (await edge.get("/v1/planner/campaigns", headers=fresh.headers)).status_code == 200
