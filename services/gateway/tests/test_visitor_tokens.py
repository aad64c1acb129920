"""Website chat: visitor tokens, ForwardAuth on the chat paths, preflights and widget.js."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from bai_contracts import (
    VISITOR_AUDIENCE,
    VISITOR_ROLE,
    VISITOR_TOKEN_TYPE,
    WIDGET_LOOKUP_SUBJECT,
    visitor_subject,
)
from bai_platform.access import service_audience
from bai_platform.app_state import held
from bai_platform.devstack import Stack
from bai_platform.identity import IDENTITY_HEADER, Identity, IdentityVerifier
from gateway.service.signing_keys import KeyRing
from gateway.service.visitors import normalise_origin
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

from .conftest import SHOP, Account, Creator, TokenForge, assert_problem, b64url, serve_widgets

# A subject only this module answers: a real creator may serve WIDGET_LOOKUP_SUBJECT in the
# same session (see the n8n callback tests' test-only owner).
LOOKUP_SUBJECT = WIDGET_LOOKUP_SUBJECT.replace(".creator.", ".widgettest.")
TOKEN_PATH = "/v1/chat/visitor-token"
CHAT_URI = "/v1/creator/chat/x"


async def _bus_ready(app: FastAPI) -> None:
    async with asyncio.timeout(10):
        while not held(
            app, GatewayState
        ).callbacks.connected:  # one NATS link serves callbacks and widgets
            await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def lookup_subject(app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> str:
    """The gateway asks this module's stand-in for creator, never a real creator."""
    assert (
        held(app, GatewayState).widgets.subject == WIDGET_LOOKUP_SUBJECT
    )  # what the app really asks
    monkeypatch.setattr(held(app, GatewayState).widgets, "subject", LOOKUP_SUBJECT)
    return LOOKUP_SUBJECT


@pytest.fixture
async def creator(
    migrated: Stack, app: FastAPI, client: httpx.AsyncClient
) -> AsyncIterator[Creator]:
    async with serve_widgets(migrated.nats_url, LOOKUP_SUBJECT) as creator:
        await _bus_ready(app)
        yield creator


@pytest.fixture
def ring(app: FastAPI) -> KeyRing:
    current: KeyRing = held(app, GatewayState).auth.ring
    return current


async def _token_call(
    client: httpx.AsyncClient, key: str, *, origin: str | None = SHOP, **extra: Any
) -> httpx.Response:
    headers = {"Origin": origin} if origin is not None else {}
    return await client.post(TOKEN_PATH, json={"widget_key": key, **extra}, headers=headers)


async def _visitor_token(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await _token_call(client, key)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _verify(
    client: httpx.AsyncClient,
    token: str,
    uri: str = CHAT_URI,
    *,
    method: str = "POST",
    origin: str | None = SHOP,
) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Forwarded-Uri": uri,
        "X-Forwarded-Method": method,
    }
    if origin is not None:
        headers["Origin"] = origin
    return await client.get("/auth/verify", headers=headers)


async def _jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/.well-known/jwks.json")  # fresh: keys may have rotated
    assert response.status_code == 200, response.text
    keys: dict[str, Any] = response.json()
    return keys


async def _identity(
    client: httpx.AsyncClient, settings: GatewaySettings, response: httpx.Response
) -> Identity:
    verifier = IdentityVerifier(
        jwks_url="http://service/no-jwks-here",
        issuer=settings.identity_issuer,
        audience=service_audience("creator"),  # the chat is creator's
        http=client,
    )
    verifier.use_keys(await _jwks(client))
    return await verifier.verify(response.headers[IDENTITY_HEADER])


def _visitor_claims(settings: GatewaySettings, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.token_issuer,
        "aud": VISITOR_AUDIENCE,
        "sub": f"vis_{uuid4().hex}",
        "tid": str(uuid4()),
        "wid": str(uuid4()),
        "org": SHOP,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _sign(
    ring: KeyRing,
    claims: dict[str, Any],
    *,
    typ: str = VISITOR_TOKEN_TYPE,
    key: Ed25519PrivateKey | None = None,
) -> str:
    return jwt.encode(
        claims,
        key or ring.current.private_key,
        algorithm="EdDSA",
        headers={"kid": ring.current.kid, "typ": typ},
    )


def _assert_refused(response: httpx.Response) -> None:
    assert_problem(response, status=401, code="invalid_token")
    assert IDENTITY_HEADER.lower() not in response.headers


# ---- POST /v1/chat/visitor-token -------------------------------------------------------


async def test_a_known_widget_on_an_allowed_site_gets_a_visitor_token(
    client: httpx.AsyncClient, creator: Creator, settings: GatewaySettings, account: Account
) -> None:
    # Creator's list is compared normalised: case, a trailing slash, a default port.
    key, widget = creator.widget(
        tenant=account.tenant_id, origins=["https://other.example", "HTTPS://Shop.Example:443/"]
    )
    response = await _token_call(client, key)
    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in response.headers["vary"]
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.visitor_token_ttl_seconds == 3600
    assert body["visitor_id"].startswith("vis_")

    token = body["token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == VISITOR_TOKEN_TYPE
    assert header["alg"] == "EdDSA"
    keyset = jwt.PyJWKSet.from_dict(await _jwks(client))
    claims = jwt.decode(
        token,
        keyset[header["kid"]],
        algorithms=["EdDSA"],
        audience=VISITOR_AUDIENCE,
        issuer=settings.token_issuer,
    )
    assert claims["aud"] == VISITOR_AUDIENCE
    assert claims["sub"] == body["visitor_id"]
    assert claims["tid"] == account.tenant_id
    assert claims["wid"] == str(widget.widget_id)
    assert claims["org"] == SHOP
    assert claims["exp"] - claims["iat"] == 3600


async def test_a_returning_visitor_keeps_their_id_and_an_odd_one_is_replaced(
    client: httpx.AsyncClient, creator: Creator
) -> None:
    key, _ = creator.widget()
    first = await _visitor_token(client, key)
    again = await _token_call(client, key, visitor_id=first["visitor_id"])
    assert again.status_code == 201, again.text
    assert again.json()["visitor_id"] == first["visitor_id"]
    assert (
        jwt.decode(again.json()["token"], options={"verify_signature": False})["sub"]
        == (first["visitor_id"])
    )
    odd = await _token_call(client, key, visitor_id="vis_short")
    assert odd.status_code == 201, odd.text
    assert odd.json()["visitor_id"] not in {"vis_short", first["visitor_id"]}


async def test_positive_widget_answers_are_cached(
    client: httpx.AsyncClient, creator: Creator
) -> None:
    key, _ = creator.widget()
    await _visitor_token(client, key)
    await _visitor_token(client, key)
    assert creator.asked.count(key) == 1


async def test_an_unknown_widget_is_404(client: httpx.AsyncClient, creator: Creator) -> None:
    response = await _token_call(client, f"wk_{uuid4().hex}")
    assert_problem(response, status=404, code="unknown_widget")
    assert response.headers["access-control-allow-origin"] == SHOP  # the widget may read why


async def test_an_inactive_widget_is_404(client: httpx.AsyncClient, creator: Creator) -> None:
    key, _ = creator.widget(active=False)
    assert_problem(await _token_call(client, key), status=404, code="unknown_widget")


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://shop.example", "https://shop.example:8443", "null"]
)
async def test_a_site_the_widget_is_not_allowed_on_is_403(
    client: httpx.AsyncClient, creator: Creator, origin: str
) -> None:
    key, _ = creator.widget()
    response = await _token_call(client, key, origin=origin)
    assert_problem(response, status=403, code="origin_not_allowed")
    assert "access-control-allow-origin" not in response.headers


async def test_a_request_without_an_origin_is_refused(
    client: httpx.AsyncClient, creator: Creator
) -> None:
    key, _ = creator.widget()
    assert_problem(await _token_call(client, key, origin=None), status=400, code="origin_required")
    assert key not in creator.asked  # refused before creator is asked


@pytest.mark.parametrize(
    "key", ["", "abc", "wk_", "wk_has space", "wk_<script>", "pk_0123456789", "wk_" + "a" * 98]
)
async def test_a_malformed_widget_key_is_422(
    client: httpx.AsyncClient, creator: Creator, key: str
) -> None:
    assert_problem(await _token_call(client, key), status=422, code="validation_failed")
    assert creator.asked == []


async def test_creator_not_answering_is_503(client: httpx.AsyncClient, app: FastAPI) -> None:
    await _bus_ready(app)  # connected, but nobody serves the widget lookup in this test
    response = await _token_call(client, f"wk_{uuid4().hex}")
    assert_problem(response, status=503, code="owner_unavailable")


# ---- ForwardAuth ----------------------------------------------------------------------


async def test_a_visitor_token_passes_on_the_chat_as_the_visitor(
    client: httpx.AsyncClient, creator: Creator, settings: GatewaySettings, account: Account
) -> None:
    key, widget = creator.widget(tenant=account.tenant_id)
    assert widget.widget_id is not None
    body = await _visitor_token(client, key)
    for origin in (SHOP, None):  # a browser names its origin; a server-side call need not
        response = await _verify(client, body["token"], origin=origin)
        assert response.status_code == 200, response.text
        assert "RateLimit" in response.headers
        identity = await _identity(client, settings, response)
        assert identity.subject == visitor_subject(widget.widget_id, body["visitor_id"])
        assert identity.subject == f"visitor:{widget.widget_id}:{body['visitor_id']}"
        assert identity.tenant_id == UUID(account.tenant_id)
        assert identity.roles == frozenset({VISITOR_ROLE})
        assert identity.scopes == frozenset({"chat"})
        assert identity.credential == "visitor"


@pytest.mark.parametrize(
    "uri",
    [
        "/v1/planner/campaigns",
        "/v1/creator/posts",
        "/v1/auth/me",
        "/v1/creator/chat",
        "/v1/creator/chatbots/x",
        "/v1/creator/chat/../posts",
        "/v1/creator/chat/%2e%2e/posts",
        "/v1/creator/chat//x",
    ],
)
async def test_a_visitor_token_is_refused_anywhere_else(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings, uri: str
) -> None:
    token = _sign(ring, _visitor_claims(settings))
    assert (await _verify(client, token)).status_code == 200  # the same token on the chat
    response = await _verify(client, token, uri)
    assert_problem(response, status=403, code="visitor_not_allowed_here")
    assert IDENTITY_HEADER.lower() not in response.headers


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_a_visitor_only_reads_and_posts(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings, method: str
) -> None:
    token = _sign(ring, _visitor_claims(settings))
    response = await _verify(client, token, method=method)
    assert_problem(response, status=403, code="visitor_not_allowed_here")


@pytest.mark.parametrize("origin", ["https://evil.example", "http://shop.example", "null"])
async def test_a_visitor_token_from_another_site_is_403(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings, origin: str
) -> None:
    token = _sign(ring, _visitor_claims(settings))
    response = await _verify(client, token, origin=origin)
    assert_problem(response, status=403, code="origin_not_allowed")
    assert IDENTITY_HEADER.lower() not in response.headers


async def test_an_expired_visitor_token_is_401(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings
) -> None:
    now = int(time.time())
    claims = _visitor_claims(settings, iat=now - 7200, nbf=now - 7200, exp=now - 60)
    _assert_refused(await _verify(client, _sign(ring, claims)))


async def test_an_access_token_passed_off_as_a_visitor_token_is_401(
    client: httpx.AsyncClient, forge: TokenForge
) -> None:
    # The gateway's own key and a valid access token's claims; only the type is changed.
    token = forge.sign(header=forge.header(typ=VISITOR_TOKEN_TYPE))
    _assert_refused(await _verify(client, token))


async def test_a_visitor_token_passed_off_as_an_access_token_is_401(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings
) -> None:
    claims = _visitor_claims(settings, jti=uuid4().hex)
    _assert_refused(await _verify(client, _sign(ring, claims, typ="at+jwt"), "/v1/auth/me"))
    _assert_refused(await _verify(client, _sign(ring, claims, typ="at+jwt")))


async def test_a_visitor_token_signed_by_another_key_is_401(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings
) -> None:
    token = _sign(ring, _visitor_claims(settings), key=Ed25519PrivateKey.generate())
    _assert_refused(await _verify(client, token))


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "bai-api"},
        {"aud": None},
        {"iss": "someone-else"},
        {"org": None},
        {"org": "https://shop.example/path"},
        {"wid": "not-a-uuid"},
        {"tid": None},
        {"sub": "user-1"},
        {"exp": None},
    ],
)
async def test_a_visitor_token_with_a_wrong_claim_is_401(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings, changes: dict[str, Any]
) -> None:
    _assert_refused(await _verify(client, _sign(ring, _visitor_claims(settings, **changes))))


async def test_a_visitor_token_with_alg_none_is_401(
    client: httpx.AsyncClient, ring: KeyRing, settings: GatewaySettings
) -> None:
    header = {"alg": "none", "typ": VISITOR_TOKEN_TYPE, "kid": ring.current.kid}
    unsigned = ".".join(
        b64url(json.dumps(part).encode()) for part in (header, _visitor_claims(settings))
    )
    _assert_refused(await _verify(client, f"{unsigned}."))


async def test_an_access_token_still_works_on_the_chat(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings
) -> None:
    response = await _verify(client, account.access_token, origin="https://anywhere.example")
    assert response.status_code == 200, response.text
    identity = await _identity(client, settings, response)
    assert identity.subject == account.user_id
    assert identity.credential == "user"


# ---- preflight and widget.js ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/creator/chat/conversations", "/v1/chat/visitor-token"])
async def test_a_preflight_is_answered_without_a_credential(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.options(
        path,
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["access-control-allow-methods"] == "GET, POST"
    assert response.headers["access-control-allow-headers"] == "Authorization, Content-Type"
    assert response.headers["access-control-max-age"] == "600"
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in response.headers


async def test_a_preflight_without_an_origin_allows_no_origin(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/creator/chat/conversations")
    assert response.status_code == 204
    assert "access-control-allow-origin" not in response.headers


async def test_the_widget_script_is_served_as_javascript(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/chat/widget.js")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/javascript")
    assert "max-age=" in response.headers["cache-control"]
    script = response.text
    for needed in (
        "/v1/chat/visitor-token",
        "/v1/creator/chat/conversations",
        '"/v1/creator/chat/"',
        "/messages",
        "data-widget-key",
        "sessionStorage",
        "textContent",
    ):
        assert needed in script, needed
    assert "innerHTML" not in script


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://Shop.Example", SHOP),
        ("https://shop.example/", SHOP),
        ("https://shop.example:443", SHOP),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", None),
        ("file://", None),
        ("https://shop.example/page", None),
        ("https://user@shop.example", None),
        ("https://shop.example:99999", None),
        ("shop.example", None),
        ("https://shop.example:", None),
        ("https://shop.example?x=1", None),
        ("https://sh<op.example", None),
        ("javascript://shop.example", None),
        (None, None),
    ],
)
def test_origins_are_compared_normalised(value: str | None, expected: str | None) -> None:
    assert normalise_origin(value) == expected
