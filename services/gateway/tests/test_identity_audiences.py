"""ForwardAuth mints the identity for the service the forwarded path belongs to, and the
gateway's own routes apply the same access rule as every service."""

from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from fastapi import FastAPI

from bai_platform.app_state import held
from bai_platform.errors import Unauthorized
from bai_platform.identity import IDENTITY_HEADER, IdentityVerifier, mint_identity
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

from .conftest import Account, assert_problem, forward_auth


def _audience(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.headers[IDENTITY_HEADER], options={"verify_signature": False})
    audience: str = claims["aud"]
    return audience


@pytest.mark.parametrize(
    ("uri", "audience"),
    [
        ("/v1/planner/campaigns", "bai-planner"),
        ("/v1/creator/engine", "bai-creator"),
        ("/v1/mining/jobs", "bai-mining"),
        ("/v1/billing/balance", "bai-billing"),
        ("/v1/auth/me", "bai-gateway"),
        ("/v1/events", "bai-gateway"),
    ],
)
async def test_the_identity_is_minted_for_the_service_the_path_belongs_to(
    client: httpx.AsyncClient, account: Account, uri: str, audience: str
) -> None:
    assert _audience(await forward_auth(client, account.access_token, uri)) == audience


async def test_one_credential_gets_one_identity_per_service_from_the_cache(
    client: httpx.AsyncClient, account: Account
) -> None:
    bearer = account.access_token
    planner = await forward_auth(client, bearer, "/v1/planner/campaigns")
    creator = await forward_auth(client, bearer, "/v1/creator/engine")
    planner_again = await forward_auth(client, bearer, "/v1/planner/brands")

    assert planner.headers[IDENTITY_HEADER] == planner_again.headers[IDENTITY_HEADER]
    assert planner.headers[IDENTITY_HEADER] != creator.headers[IDENTITY_HEADER]


async def test_an_identity_minted_for_planner_does_not_verify_as_creators(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings, jwks: dict[str, Any]
) -> None:
    response = await forward_auth(client, account.access_token, "/v1/planner/campaigns")
    creator = IdentityVerifier(
        jwks_url="http://service/no-jwks-here",
        issuer=settings.identity_issuer,
        audience="bai-creator",
        http=client,
    )
    creator.use_keys(jwks)

    with pytest.raises(Unauthorized):
        await creator.verify(response.headers[IDENTITY_HEADER])


async def test_an_identity_minted_for_planner_is_401_at_the_gateways_own_routes(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await forward_auth(client, account.access_token, "/v1/planner/campaigns")

    refused = await client.get(
        "/v1/auth/me", headers={IDENTITY_HEADER: response.headers[IDENTITY_HEADER]}
    )

    assert_problem(refused, status=401, code="unauthorized")


def _gateway_identity(
    app: FastAPI, settings: GatewaySettings, account: Account, **claims: Any
) -> str:
    key = held(app, GatewayState).auth.ring.current
    return mint_identity(
        key=key.private_key,
        kid=key.kid,
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        tenant_id=account.tenant_id,
        **claims,
    )


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        pytest.param(
            {
                "subject": f"visitor:{uuid4()}:vis_0123456789abcdef",
                "roles": ["visitor"],
                "scopes": ["chat"],
                "credential": "visitor",
            },
            "visitor_not_allowed_here",
            id="a visitor",
        ),
        pytest.param(
            {
                "subject": "key:1",
                "roles": ["editor"],
                "scopes": ["planner:read", "planner:write"],
                "credential": "api_key",
            },
            "insufficient_scope",
            id="an API key",
        ),
    ],
)
async def test_the_gateways_own_routes_refuse_what_forward_auth_would(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: GatewaySettings,
    account: Account,
    claims: dict[str, Any],
    code: str,
) -> None:
    headers = {IDENTITY_HEADER: _gateway_identity(app, settings, account, **claims)}

    response = await client.get("/v1/auth/members", headers=headers)

    assert_problem(response, status=403, code=code)


async def test_the_gateways_own_routes_serve_a_member_minted_for_the_gateway(
    client: httpx.AsyncClient, app: FastAPI, settings: GatewaySettings, account: Account
) -> None:
    identity = _gateway_identity(
        app,
        settings,
        account,
        subject=account.user_id,
        roles=["owner"],
        scopes=["api"],
        credential="user",
    )

    response = await client.get("/v1/auth/members", headers={IDENTITY_HEADER: identity})

    assert response.status_code == 200, response.text
