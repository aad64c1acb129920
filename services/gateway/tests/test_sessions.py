"""Logout ends a session; a password change ends them all, everywhere, within the cache TTL.

A session is a refresh-token family; its access tokens name it (``sid``). Ending it (logout,
or a reused refresh token) ends its access tokens on every gateway replica within the
ForwardAuth cache window. A replica that has not cached the token yet (``replica``, the
state of every replica once that window has passed) refuses it at once.
"""

from collections.abc import AsyncIterator

import httpx
import pytest

from bai_testing.plugin import app_client
from gateway.app import create_app
from gateway.settings import GatewaySettings

from .conftest import PASSWORD, Account, assert_problem, forward_auth, identity_headers

NEW_PASSWORD = "a much longer new passphrase"


@pytest.fixture
async def replica(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """Another gateway process: the same database and keys, a cache of its own."""
    async with app_client(create_app(settings)) as other:
        yield other


async def _login(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def _change(client: httpx.AsyncClient, account: Account, current: str) -> httpx.Response:
    body = {"current_password": current, "new_password": NEW_PASSWORD}
    headers = await identity_headers(client, account.access_token)
    return await client.post("/v1/auth/password", json=body, headers=headers)


async def test_logout_ends_the_session_of_its_refresh_token(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204
    assert_problem(await _refresh(client, account.refresh_token), status=401, code="invalid_token")


async def test_logout_with_an_unknown_token_says_nothing_either_way(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/auth/logout", json={"refresh_token": "rt_" + "x" * 40})
    assert response.status_code == 204


async def test_password_change_needs_the_current_password(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert_problem(
        await _change(client, account, "not the password"), status=403, code="wrong_password"
    )
    login = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert login.status_code == 200


async def test_password_change_ends_every_other_session(
    client: httpx.AsyncClient, account: Account
) -> None:
    other_device = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    changed = await _change(client, account, PASSWORD)
    assert changed.status_code == 200, changed.text
    # The new tokens of this device work; the old ones, here and elsewhere, do not.
    assert (await forward_auth(client, changed.json()["access_token"])).status_code == 200
    old_device_token = other_device.json()["access_token"]
    assert_problem(await forward_auth(client, old_device_token), status=401, code="invalid_token")
    for token in (account.refresh_token, other_device.json()["refresh_token"]):
        assert_problem(await _refresh(client, token), status=401, code="invalid_token")


async def test_after_a_password_change_only_the_new_password_signs_in(
    client: httpx.AsyncClient, account: Account
) -> None:
    await _change(client, account, PASSWORD)
    old = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(old, status=401, code="invalid_credentials")
    new = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200


async def test_after_logout_the_access_token_is_refused_once_the_cache_window_passed(
    client: httpx.AsyncClient, replica: httpx.AsyncClient, account: Account
) -> None:
    assert (await forward_auth(client, account.access_token)).status_code == 200  # cached
    response = await client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204
    refused = await forward_auth(replica, account.access_token)
    body = assert_problem(refused, status=401, code="invalid_token")
    assert "session" in body["detail"]


async def test_logout_on_one_device_leaves_the_other_devices_signed_in(
    client: httpx.AsyncClient, replica: httpx.AsyncClient, account: Account
) -> None:
    laptop, phone = await _login(client, account), await _login(client, account)
    await client.post("/v1/auth/logout", json={"refresh_token": laptop["refresh_token"]})
    assert_problem(
        await forward_auth(replica, laptop["access_token"]), status=401, code="invalid_token"
    )
    assert (await forward_auth(replica, phone["access_token"])).status_code == 200
    assert (await forward_auth(replica, account.access_token)).status_code == 200
    assert (await _refresh(client, phone["refresh_token"])).status_code == 200


async def test_a_reused_refresh_token_ends_the_access_tokens_of_its_session(
    client: httpx.AsyncClient, replica: httpx.AsyncClient, account: Account
) -> None:
    other_device = await _login(client, account)
    rotated = await _refresh(client, account.refresh_token)
    assert rotated.status_code == 200, rotated.text
    # Both access tokens of the session still pass before the reuse.
    assert (await forward_auth(client, rotated.json()["access_token"])).status_code == 200
    reused = await _refresh(client, account.refresh_token)  # a thief, or the victim
    assert_problem(reused, status=401, code="refresh_token_reused")
    for token in (account.access_token, rotated.json()["access_token"]):
        assert_problem(await forward_auth(replica, token), status=401, code="invalid_token")
    assert (await forward_auth(replica, other_device["access_token"])).status_code == 200


async def test_a_rotated_session_keeps_its_access_tokens(
    client: httpx.AsyncClient, replica: httpx.AsyncClient, account: Account
) -> None:
    rotated = await _refresh(client, account.refresh_token)
    assert rotated.status_code == 200, rotated.text
    for token in (account.access_token, rotated.json()["access_token"]):
        assert (await forward_auth(replica, token)).status_code == 200


async def test_the_process_that_ends_a_session_refuses_its_cached_tokens_at_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    laptop = await _login(client, account)
    for token in (account.access_token, laptop["access_token"]):  # both decisions cached
        assert (await forward_auth(client, token)).status_code == 200
    await client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert_problem(
        await forward_auth(client, account.access_token), status=401, code="invalid_token"
    )
    assert (await forward_auth(client, laptop["access_token"])).status_code == 200


async def test_the_process_that_sees_a_reuse_refuses_the_cached_tokens_at_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert (await forward_auth(client, account.access_token)).status_code == 200  # cached
    assert (await _refresh(client, account.refresh_token)).status_code == 200
    reused = await _refresh(client, account.refresh_token)
    assert_problem(reused, status=401, code="refresh_token_reused")
    assert_problem(
        await forward_auth(client, account.access_token), status=401, code="invalid_token"
    )
