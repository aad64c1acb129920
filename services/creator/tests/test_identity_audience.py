"""Creator accepts only identities minted for creator: the gateway mints one per service,
so a token handed to planner (or the gateway) is no key to creator."""

from uuid import UUID

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bai_platform.identity import IDENTITY_HEADER, mint_identity
from bai_testing.plugin import TEST_KID

URL = "/v1/creator/engine"


def _headers(key: Ed25519PrivateKey, tenant: UUID, audience: str) -> dict[str, str]:
    token = mint_identity(
        key=key,
        kid=TEST_KID,
        issuer="bai-gateway",
        audience=audience,
        subject="user-1",
        tenant_id=tenant,
        roles=["owner"],
        scopes=["api"],
        credential="user",
    )
    return {IDENTITY_HEADER: token}


async def test_an_identity_minted_for_creator_is_accepted(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey
) -> None:
    response = await client.get(URL, headers=_headers(signing_key, tenant, "bai-creator"))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("audience", ["bai-planner", "bai-gateway", "bai-services"])
async def test_an_identity_minted_for_another_service_is_401(
    client: httpx.AsyncClient, tenant: UUID, signing_key: Ed25519PrivateKey, audience: str
) -> None:
    response = await client.get(URL, headers=_headers(signing_key, tenant, audience))

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
