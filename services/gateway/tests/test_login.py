"""Login: the right password signs in to the user's workspace; anything else is one answer."""

import httpx
import jwt

from .conftest import PASSWORD, Account, assert_problem, sign_up, unique_email


async def test_login_signs_in_to_the_signup_workspace(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user_id"], body["tenant_id"]) == (account.user_id, account.tenant_id)
    assert body["access_token"] != account.access_token
    assert body["refresh_token"] != account.refresh_token
    assert response.headers["cache-control"] == "no-store"
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["roles"] == [
        "owner"
    ]


async def test_login_with_the_email_in_another_case_works(client: httpx.AsyncClient) -> None:
    email = unique_email("Mixed.Case")
    account = await sign_up(client, email=email)
    response = await client.post(
        "/v1/auth/login", json={"email": email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == account.user_id


async def test_wrong_password_is_401_invalid_credentials(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD + "!"}
    )
    assert_problem(response, status=401, code="invalid_credentials")
    assert PASSWORD not in response.text


async def test_unknown_email_is_401_invalid_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    assert_problem(response, status=401, code="invalid_credentials")


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient, account: Account
) -> None:
    wrong_password = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": "not the password"}
    )
    unknown_email = await client.post(
        "/v1/auth/login", json={"email": unique_email(), "password": "not the password"}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()


async def test_login_with_an_unknown_field_is_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/v1/auth/login",
        json={"email": account.email, "password": PASSWORD, "tenant_id": account.tenant_id},
    )
    assert_problem(response, status=422, code="validation_failed")
    assert PASSWORD not in response.text


async def test_login_with_an_empty_password_is_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/v1/auth/login", json={"email": account.email, "password": ""})
    assert_problem(response, status=422, code="validation_failed")
