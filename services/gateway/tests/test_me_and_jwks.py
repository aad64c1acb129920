"""The caller's identity (``/v1/auth/me``) and the published signing keys."""

from typing import Any

import httpx
import jwt

from bai_platform.identity import IDENTITY_HEADER

from .conftest import Account, assert_problem

PUBLIC_OKP_MEMBERS = {"kty", "crv", "x", "kid", "alg", "use"}
PUBLIC_OKP_VALUES = ["OKP", "Ed25519", "EdDSA", "sig"]


async def test_me_without_an_identity_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/auth/me")
    assert_problem(response, status=401, code="unauthorized")


async def test_me_with_the_access_token_as_bearer_only_is_401(
    client: httpx.AsyncClient, account: Account
) -> None:
    # Services trust the gateway's identity header, never the access token itself.
    response = await client.get("/v1/auth/me", headers=account.bearer)
    assert_problem(response, status=401, code="unauthorized")


async def test_me_with_the_access_token_as_identity_is_401(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.get("/v1/auth/me", headers={IDENTITY_HEADER: account.access_token})
    assert_problem(response, status=401, code="unauthorized")


async def test_me_with_a_garbage_identity_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/auth/me", headers={IDENTITY_HEADER: "garbage"})
    assert_problem(response, status=401, code="unauthorized")


async def test_me_with_the_identity_from_forward_auth_returns_the_user(
    client: httpx.AsyncClient, account: Account
) -> None:
    verified = await client.get("/auth/verify", headers=account.bearer)
    identity = verified.headers[IDENTITY_HEADER]
    response = await client.get("/v1/auth/me", headers={IDENTITY_HEADER: identity})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": account.user_id,
        "tenant_id": account.tenant_id,
        "roles": ["owner"],
        "scopes": ["api"],
    }


async def test_jwks_lists_the_key_that_signs_access_tokens(
    jwks: dict[str, Any], account: Account
) -> None:
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    assert kid in {key["kid"] for key in jwks["keys"]}


async def test_jwks_holds_only_public_ed25519_members(jwks: dict[str, Any]) -> None:
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert "d" not in key
        assert set(key) <= PUBLIC_OKP_MEMBERS
        assert [key["kty"], key["crv"], key["alg"], key["use"]] == PUBLIC_OKP_VALUES


async def test_jwks_keys_load_as_public_keys(jwks: dict[str, Any]) -> None:
    keyset = jwt.PyJWKSet.from_dict(jwks)
    assert len(keyset.keys) == len(jwks["keys"])
    for key in keyset.keys:
        assert not hasattr(key.key, "private_bytes")


async def test_jwks_may_be_cached_publicly(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.headers["cache-control"] == "public, max-age=300"
