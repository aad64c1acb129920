"""GET /v1/creator/campaigns/{id}/brief: the tenant's own briefs only, callers identified."""

from collections.abc import Awaitable, Callable
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bai_contracts import CampaignCreated
from bai_platform.envelope import Envelope
from bai_platform.identity import IDENTITY_HEADER, mint_identity

IdentityFor = Callable[[UUID, str], dict[str, str]]
CampaignCreatedFor = Callable[[UUID], Envelope]
Deliver = Callable[[Envelope], Awaitable[None]]


def brief_url(campaign_id: UUID | str) -> str:
    return f"/v1/creator/campaigns/{campaign_id}/brief"


async def stored_brief_of(
    tenant: UUID, campaign_created: CampaignCreatedFor, deliver: Deliver
) -> UUID:
    envelope = campaign_created(tenant)
    await deliver(envelope)
    return envelope.payload(CampaignCreated).campaign_id


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "campaign_brief_not_found"


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_a_tenant_member_reads_the_brief_of_its_campaign(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    campaign_created: CampaignCreatedFor,
    deliver: Deliver,
    role: str,
) -> None:
    campaign_id = await stored_brief_of(tenant, campaign_created, deliver)

    response = await client.get(brief_url(campaign_id), headers=identity_for(tenant, role))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["campaign_id"] == str(campaign_id)
    assert body["name"] == "Spring sale"
    assert body["goal"] == "Fill the terrace on weekday afternoons"
    assert body["channels"] == ["instagram", "email"]
    assert (body["starts_on"], body["ends_on"]) == ("2026-03-01", "2026-03-31")
    assert set(body) == {
        "campaign_id",
        "name",
        "goal",
        "channels",
        "starts_on",
        "ends_on",
        "received_at",
    }


async def test_another_tenant_gets_404_for_the_brief(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    campaign_created: CampaignCreatedFor,
    deliver: Deliver,
) -> None:
    campaign_id = await stored_brief_of(tenant, campaign_created, deliver)

    response = await client.get(brief_url(campaign_id), headers=identity_for(uuid4(), "owner"))

    assert_not_found(response)
    assert "Spring sale" not in response.text


async def test_an_unknown_campaign_is_404(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.get(brief_url(uuid4()), headers=identity_for(tenant, "owner"))

    assert_not_found(response)


async def test_a_campaign_id_that_is_not_a_uuid_is_422(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.get(brief_url("1 OR 1=1"), headers=identity_for(tenant, "owner"))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_request_without_identity_is_401(
    client: httpx.AsyncClient,
    tenant: UUID,
    campaign_created: CampaignCreatedFor,
    deliver: Deliver,
) -> None:
    campaign_id = await stored_brief_of(tenant, campaign_created, deliver)

    response = await client.get(brief_url(campaign_id))

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"
    assert "Spring sale" not in response.text


async def test_an_identity_signed_by_another_key_is_401(
    client: httpx.AsyncClient,
    tenant: UUID,
    campaign_created: CampaignCreatedFor,
    deliver: Deliver,
) -> None:
    campaign_id = await stored_brief_of(tenant, campaign_created, deliver)
    forged = mint_identity(
        key=Ed25519PrivateKey.generate(),
        kid="test",
        issuer="bai-gateway",
        audience="bai-creator",
        subject="user-1",
        tenant_id=tenant,
        roles=["owner"],
        scopes=["api"],
        credential="user",
    )

    response = await client.get(brief_url(campaign_id), headers={IDENTITY_HEADER: forged})

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
