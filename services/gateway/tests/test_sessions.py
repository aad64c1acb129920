"""Logout ends a session; a password change ends them all, everywhere, within the cache TTL."""

import httpx

from .conftest import PASSWORD, Account, assert_problem, forward_auth, identity_headers

NEW_PASSWORD = "a much longer new passphrase"


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
