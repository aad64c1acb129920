"""ForwardAuth: a valid bearer access token becomes an identity; everything else is a 401."""

import base64
import json
import time
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from bai_platform.app_state import held
from bai_platform.errors import Unauthorized
from bai_platform.identity import IDENTITY_HEADER, IDENTITY_TYP, IdentityVerifier, mint_identity
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

from .conftest import Account, TokenForge, assert_problem, b64url, hs256_token


def _verifier(
    client: httpx.AsyncClient, settings: GatewaySettings, jwks: dict[str, Any]
) -> IdentityVerifier:
    # The JWKS URL answers 404, so only the keys given here are ever trusted.
    verifier = IdentityVerifier(
        jwks_url="http://service/no-jwks-here",
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        http=client,
    )
    verifier.use_keys(jwks)
    return verifier


async def _verify(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    return await client.get("/auth/verify", headers={"Authorization": f"Bearer {token}", **headers})


def _assert_refused(response: httpx.Response) -> None:
    assert_problem(response, status=401, code="invalid_token")
    assert response.headers["www-authenticate"] == "Bearer"
    assert IDENTITY_HEADER.lower() not in response.headers


async def test_valid_bearer_gets_200_with_an_identity(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await _verify(client, account.access_token)
    assert response.status_code == 200, response.text
    assert jwt.get_unverified_header(response.headers[IDENTITY_HEADER])["typ"] == IDENTITY_TYP


async def test_identity_verifies_to_the_callers_tenant_subject_and_roles(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings, jwks: dict[str, Any]
) -> None:
    response = await _verify(client, account.access_token)
    identity = await _verifier(client, settings, jwks).verify(response.headers[IDENTITY_HEADER])
    assert identity.subject == account.user_id
    assert identity.tenant_id == UUID(account.tenant_id)
    assert identity.roles == frozenset({"owner"})
    assert identity.scopes == frozenset({"api"})
    assert identity.credential == "user"


async def test_identity_is_not_trusted_by_a_verifier_with_other_keys(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings
) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    raw = other.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid}]}
    response = await _verify(client, account.access_token)
    with pytest.raises(Unauthorized):
        await _verifier(client, settings, jwks).verify(response.headers[IDENTITY_HEADER])


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_forward_auth_answers_for_every_forwarded_method(
    client: httpx.AsyncClient, account: Account, method: str
) -> None:
    response = await client.request(method, "/auth/verify", headers=account.bearer)
    assert response.status_code == 200, response.text


async def test_token_forged_without_changes_is_accepted(
    client: httpx.AsyncClient, forge: TokenForge
) -> None:
    # The refusals below change one detail of this token; this one must pass.
    response = await _verify(client, forge.sign())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("sid", ["not-a-uuid", 7, ""])
async def test_token_naming_a_malformed_session_is_401(
    client: httpx.AsyncClient, forge: TokenForge, sid: object
) -> None:
    _assert_refused(await _verify(client, forge.sign(forge.claims(sid=sid))))


async def test_token_naming_a_session_that_never_existed_is_accepted(
    client: httpx.AsyncClient, forge: TokenForge
) -> None:
    # Only an ended session is refused; signing a token at all needs the gateway's key.
    response = await _verify(client, forge.sign(forge.claims(sid=str(uuid4()))))
    assert response.status_code == 200, response.text


async def test_missing_authorization_header_is_401(client: httpx.AsyncClient) -> None:
    _assert_refused(await client.get("/auth/verify"))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:", "bearer-ish"])
async def test_non_bearer_scheme_is_401(
    client: httpx.AsyncClient, account: Account, scheme: str
) -> None:
    response = await client.get(
        "/auth/verify", headers={"Authorization": f"{scheme} {account.access_token}"}
    )
    _assert_refused(response)


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    "])
async def test_bearer_without_a_token_is_401(client: httpx.AsyncClient, value: str) -> None:
    _assert_refused(await client.get("/auth/verify", headers={"Authorization": value}))


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJFZERTQSJ9..", "Zm9v.YmFy.YmF6"])
async def test_garbage_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    _assert_refused(await _verify(client, token))


async def test_token_with_alg_none_is_401(client: httpx.AsyncClient, forge: TokenForge) -> None:
    header = b64url(json.dumps(forge.header(alg="none")).encode())
    claims = b64url(json.dumps(forge.claims()).encode())
    for token in (f"{header}.{claims}.", f"{header}.{claims}"):
        _assert_refused(await _verify(client, token))


@pytest.mark.parametrize("form", ["raw", "pem", "jwk-x"])
async def test_hs256_token_signed_with_the_public_key_is_401(
    client: httpx.AsyncClient, forge: TokenForge, form: str
) -> None:
    public = forge.ring.current.public_key
    secrets = {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-x": forge.ring.current.public_jwk["x"].encode(),
    }
    token = hs256_token(forge.header(alg="HS256"), forge.claims(), secrets[form])
    _assert_refused(await _verify(client, token))


async def test_expired_token_is_401(client: httpx.AsyncClient, forge: TokenForge) -> None:
    now = int(time.time())
    token = forge.sign(forge.claims(iat=now - 900, nbf=now - 900, exp=now - 60))
    _assert_refused(await _verify(client, token))


async def test_token_not_yet_valid_is_401(client: httpx.AsyncClient, forge: TokenForge) -> None:
    token = forge.sign(forge.claims(nbf=int(time.time()) + 120))
    _assert_refused(await _verify(client, token))


@pytest.mark.parametrize("audience", ["bai-services", "someone-else", None])
async def test_token_for_another_audience_is_401(
    client: httpx.AsyncClient, forge: TokenForge, audience: str | None
) -> None:
    _assert_refused(await _verify(client, forge.sign(forge.claims(aud=audience))))


@pytest.mark.parametrize("issuer", ["someone-else", None])
async def test_token_from_another_issuer_is_401(
    client: httpx.AsyncClient, forge: TokenForge, issuer: str | None
) -> None:
    _assert_refused(await _verify(client, forge.sign(forge.claims(iss=issuer))))


@pytest.mark.parametrize("claim", ["sub", "tid", "exp", "jti"])
async def test_token_missing_a_required_claim_is_401(
    client: httpx.AsyncClient, forge: TokenForge, claim: str
) -> None:
    _assert_refused(await _verify(client, forge.sign(forge.claims(**{claim: None}))))


async def test_token_with_a_tenant_that_is_not_a_uuid_is_401(
    client: httpx.AsyncClient, forge: TokenForge
) -> None:
    _assert_refused(await _verify(client, forge.sign(forge.claims(tid="acme"))))


@pytest.mark.parametrize("typ", ["JWT", IDENTITY_TYP, None])
async def test_token_of_another_type_is_401(
    client: httpx.AsyncClient, forge: TokenForge, typ: str | None
) -> None:
    _assert_refused(await _verify(client, forge.sign(header=forge.header(typ=typ))))


async def test_identity_token_presented_as_an_access_token_is_401(
    client: httpx.AsyncClient, account: Account
) -> None:
    identity = (await _verify(client, account.access_token)).headers[IDENTITY_HEADER]
    _assert_refused(await _verify(client, identity))


async def test_identity_token_for_the_access_audience_is_still_401(
    client: httpx.AsyncClient, forge: TokenForge, settings: GatewaySettings
) -> None:
    key = forge.ring.current
    identity = mint_identity(
        key=key.private_key,
        kid=key.kid,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        subject=str(uuid4()),
        tenant_id=uuid4(),
        roles=["owner"],
        scopes=["api"],
        credential="user",
    )
    _assert_refused(await _verify(client, identity))


async def test_refresh_token_as_bearer_is_401(client: httpx.AsyncClient, account: Account) -> None:
    _assert_refused(await _verify(client, account.refresh_token))


@pytest.mark.parametrize("kid", ["k_unknown", None])
async def test_token_with_an_unknown_or_absent_kid_is_401(
    client: httpx.AsyncClient, forge: TokenForge, kid: str | None
) -> None:
    _assert_refused(await _verify(client, forge.sign(header=forge.header(kid=kid))))


async def test_token_signed_by_another_key_under_a_known_kid_is_401(
    client: httpx.AsyncClient, forge: TokenForge
) -> None:
    token = jwt.encode(
        forge.claims(),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers=forge.header(),
    )
    _assert_refused(await _verify(client, token))


async def test_token_with_a_tampered_payload_is_401(
    client: httpx.AsyncClient, account: Account
) -> None:
    header, payload, signature = account.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    tampered = b64url(json.dumps(claims).encode())
    _assert_refused(await _verify(client, f"{header}.{tampered}.{signature}"))


@pytest.mark.parametrize("param", ["access_token", "token", "jwt", "api_key", "Access_Token"])
async def test_token_in_the_forwarded_query_string_is_401(
    client: httpx.AsyncClient, account: Account, param: str
) -> None:
    uri = f"/v1/planner/campaigns?{param}={account.access_token}"
    response = await _verify(client, account.access_token, **{"X-Forwarded-Uri": uri})
    _assert_refused(response)
    assert account.access_token not in response.text


async def test_forwarded_query_string_without_a_token_is_allowed(
    client: httpx.AsyncClient, account: Account
) -> None:
    uri = "/v1/planner/campaigns?page_size=20&cursor=abc"
    response = await _verify(client, account.access_token, **{"X-Forwarded-Uri": uri})
    assert response.status_code == 200, response.text


# ---- the ForwardAuth endpoint ahead of the middleware stack (gateway.verify_api) --------
def _decide_raising(app: FastAPI, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    async def decide(**_: object) -> None:
        raise exc

    monkeypatch.setattr(held(app, GatewayState).forward_auth, "decide", decide)


async def test_a_database_away_during_a_decision_is_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    _decide_raising(app, monkeypatch, ConnectionRefusedError("nothing listens"))
    response = await _verify(client, account.access_token)
    assert_problem(response, status=503, code="database_unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert IDENTITY_HEADER.lower() not in response.headers


async def test_an_unexpected_failure_of_a_decision_is_a_logged_500_problem(
    app: FastAPI, client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    _decide_raising(app, monkeypatch, RuntimeError("a defect"))
    with capture_logs() as logs:
        response = await _verify(client, account.access_token)
    assert_problem(response, status=500, code="internal_error")
    assert "a defect" not in response.text
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["unhandled_error"]


async def test_decisions_are_counted_by_status_under_their_route(
    client: httpx.AsyncClient, account: Account
) -> None:
    def counted(status: int) -> float:
        labels = {"service": "gateway", "method": "GET", "route": "/auth/verify"}
        value = REGISTRY.get_sample_value(
            "bai_http_requests_total", {**labels, "status": str(status)}
        )
        return value or 0.0

    before = counted(200), counted(401)
    assert (await _verify(client, account.access_token)).status_code == 200
    _assert_refused(await _verify(client, "not-a-token"))
    assert (counted(200), counted(401)) == (before[0] + 1, before[1] + 1)
