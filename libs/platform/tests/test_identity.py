"""Services trust X-BAI-Identity only when it is exactly what the gateway mints."""

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bai_platform.errors import Unauthorized
from bai_platform.identity import IDENTITY_TYP, IdentityVerifier, mint_identity

ISSUER, AUDIENCE = "bai-gateway", "bai-services"
KEY = Ed25519PrivateKey.generate()


def _jwk(kid: str, key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def _mint(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "key": KEY,
        "kid": "k1",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "user-1",
        "tenant_id": uuid4(),
        "roles": ["editor"],
        "scopes": ["api"],
        "credential": "user",
    }
    return mint_identity(**(args | overrides))


class _Jwks:
    """A tiny JWKS endpoint that counts how often it is asked."""

    def __init__(self, keys: list[dict[str, str]]) -> None:
        self.keys, self.fetches = keys, 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        return httpx.Response(200, json={"keys": self.keys})


@pytest.fixture
def jwks() -> _Jwks:
    return _Jwks([_jwk("k1", KEY)])


@pytest.fixture
async def verifier(jwks: _Jwks) -> AsyncIterator[IdentityVerifier]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks.handle)) as http:
        yield IdentityVerifier(
            jwks_url="http://gateway/.well-known/jwks.json",
            issuer=ISSUER,
            audience=AUDIENCE,
            http=http,
        )


async def test_minted_identity_verifies_to_its_tenant_and_roles(verifier: IdentityVerifier) -> None:
    tenant = uuid4()
    identity = await verifier.verify(_mint(tenant_id=tenant, roles=["admin"]))
    assert (identity.tenant_id, identity.roles, identity.subject) == (
        tenant,
        frozenset({"admin"}),
        "user-1",
    )


async def test_keys_are_fetched_once_and_reused(verifier: IdentityVerifier, jwks: _Jwks) -> None:
    await verifier.verify(_mint())
    await verifier.verify(_mint())
    assert jwks.fetches == 1


async def test_unknown_kid_refreshes_the_jwks_at_most_once(
    verifier: IdentityVerifier, jwks: _Jwks
) -> None:
    stranger = Ed25519PrivateKey.generate()
    for _ in range(3):
        with pytest.raises(Unauthorized, match="unknown key"):
            await verifier.verify(_mint(key=stranger, kid="k-unknown"))
    assert jwks.fetches == 1


async def test_rotated_key_is_picked_up_by_a_refresh(
    verifier: IdentityVerifier, jwks: _Jwks
) -> None:
    await verifier.verify(_mint())
    rotated = Ed25519PrivateKey.generate()
    jwks.keys.append(_jwk("k2", rotated))
    verifier._fetched_at = float("-inf")  # the refresh interval has passed
    assert (await verifier.verify(_mint(key=rotated, kid="k2"))).subject == "user-1"


async def test_requests_that_arrive_during_the_first_fetch_wait_for_it(jwks: _Jwks) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the fetch is in flight while the others arrive
        return jwks.handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
        fresh = IdentityVerifier(
            jwks_url="http://gateway/.well-known/jwks.json",
            issuer=ISSUER,
            audience=AUDIENCE,
            http=http,
        )
        identities = await asyncio.gather(*(fresh.verify(_mint()) for _ in range(5)))
    assert {identity.subject for identity in identities} == {"user-1"}
    assert jwks.fetches == 1


def _unsigned(claims: dict[str, Any]) -> str:
    headers = {"kid": "k1", "typ": IDENTITY_TYP}
    # alg "none" takes no key; PyJWT's annotation does not know that case.
    return jwt.encode(claims, key=None, algorithm="none", headers=headers)  # type: ignore[arg-type]


def _hs256_with_public_key(claims: dict[str, Any]) -> str:
    public = KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return jwt.encode(claims, public, algorithm="HS256", headers={"kid": "k1", "typ": IDENTITY_TYP})


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u",
        "tid": str(uuid4()),
        "iat": now,
        "exp": now + 60,
    }


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_mint(ttl_seconds=-30), id="expired"),
        pytest.param(_mint(audience="bai-api"), id="wrong-audience"),
        pytest.param(_mint(issuer="someone-else"), id="wrong-issuer"),
        pytest.param(_unsigned(_claims()), id="alg-none"),
        pytest.param(_hs256_with_public_key(_claims()), id="hs256-confusion"),
        pytest.param(
            jwt.encode(_claims(), KEY, algorithm="EdDSA", headers={"kid": "k1", "typ": "at+jwt"}),
            id="access-token-typ",
        ),
        pytest.param("not.a.token", id="garbage"),
        pytest.param(_mint(tenant_id="not-a-uuid"), id="bad-tenant"),
    ],
)
async def test_forged_or_wrong_identities_are_refused(
    verifier: IdentityVerifier, token: str
) -> None:
    with pytest.raises(Unauthorized):
        await verifier.verify(token)
