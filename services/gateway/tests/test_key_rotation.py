"""Signing keys rotate without logging anyone out, and retired keys stop verifying."""

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from bai_platform.app_state import held
from bai_platform.db import Database
from bai_testing.plugin import app_client
from gateway.app import create_app
from gateway.models import SigningKey
from gateway.service.signing_keys import fernet_for, rotate_signing_key
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

from .conftest import Account, sign_up


@pytest.fixture
async def restore_keys(app: FastAPI, db: AsyncEngine) -> AsyncIterator[None]:
    """Rotation changes the session's shared key set: put it back afterwards."""
    async with db.connect() as conn:
        before = {
            row.kid: row.retired_at
            for row in (
                await conn.execute(select(col(SigningKey.kid), col(SigningKey.retired_at)))
            ).all()
        }
    yield
    async with db.begin() as conn:
        await conn.execute(delete(SigningKey).where(col(SigningKey.kid).not_in(before)))
        for kid, retired_at in before.items():
            await conn.execute(
                update(SigningKey).where(col(SigningKey.kid) == kid).values(retired_at=retired_at)
            )
    await held(app, GatewayState).auth.keys.reload()


async def _rotate(settings: GatewaySettings, grace_seconds: int) -> str:
    database = Database(settings)
    try:
        async with database.transaction() as session:
            return await rotate_signing_key(
                session,
                fernet=fernet_for(settings.key_encryption_secret),
                grace_seconds=grace_seconds,
            )
    finally:
        await database.dispose()


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def _verify(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def _kids(client: httpx.AsyncClient) -> set[str]:
    keys: list[dict[str, Any]] = (await client.get("/.well-known/jwks.json")).json()["keys"]
    return {key["kid"] for key in keys}


@pytest.mark.usefixtures("restore_keys")
async def test_after_rotation_old_tokens_still_work_and_new_ones_use_the_new_key(
    settings: GatewaySettings, account: Account
) -> None:
    new_kid = await _rotate(settings, grace_seconds=3600)
    immediate = settings.model_copy(update={"key_activation_override_seconds": 0})
    async with app_client(create_app(immediate)) as client:
        assert {new_kid, _kid(account.access_token)} <= await _kids(client)
        assert await _verify(client, account.access_token) == 200
        fresh = await sign_up(client)
    assert _kid(fresh.access_token) == new_kid


@pytest.mark.usefixtures("restore_keys")
async def test_a_new_key_is_published_before_anyone_signs_with_it(
    settings: GatewaySettings, account: Account
) -> None:
    new_kid = await _rotate(settings, grace_seconds=3600)
    patient = settings.model_copy(update={"key_activation_override_seconds": 3600})
    async with app_client(create_app(patient)) as client:
        assert new_kid in await _kids(client)  # services can fetch it already
        fresh = await sign_up(client)
    assert _kid(fresh.access_token) == _kid(account.access_token)  # the old key still signs


@pytest.mark.usefixtures("restore_keys")
async def test_a_token_signed_after_another_process_rotated_is_accepted(
    settings: GatewaySettings,
) -> None:
    immediate = settings.model_copy(
        update={"unknown_kid_reload_seconds": 0, "key_activation_override_seconds": 0}
    )
    async with app_client(create_app(immediate)) as eager_client:  # loaded the keys already
        new_kid = await _rotate(settings, grace_seconds=3600)  # ... then another rotated
        async with app_client(create_app(immediate)) as later_client:
            account = await sign_up(later_client)  # signed by a process started since
        assert _kid(account.access_token) == new_kid
        assert await _verify(eager_client, account.access_token) == 200


@pytest.mark.usefixtures("restore_keys")
async def test_retired_key_leaves_the_jwks_and_its_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient, settings: GatewaySettings, account: Account
) -> None:
    old_kid = _kid(account.access_token)
    await _rotate(settings, grace_seconds=0)
    await held(app, GatewayState).auth.keys.reload()
    assert old_kid not in await _kids(client)
    assert await _verify(client, account.access_token) == 401


@pytest.mark.usefixtures("restore_keys")
def test_rotation_command_prints_the_new_key(settings: GatewaySettings) -> None:
    env = {"BAI_DATABASE_URL": settings.database_url.get_secret_value(), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "rotate-signing-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "new signing key k_" in result.stdout
