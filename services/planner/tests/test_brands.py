"""Brands: a name, a time zone, default channels and the voice every post follows."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

IdentityFor = Callable[[UUID, str], dict[str, str]]
URL = "/v1/planner/brands"
ACME: dict[str, Any] = {
    "name": "Acme Coffee",
    "timezone": "Europe/Madrid",
    "voice": {
        "tone": "warm",
        "audience": "young professionals",
        "keywords": ["coffee", "mornings"],
        "avoid": ["cheap"],
    },
}


async def test_a_brand_is_created_with_its_voice(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.post(URL, json=ACME, headers=identity_for(tenant, "editor"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["voice"]["keywords"] == ["coffee", "mornings"]
    assert body["voice"]["avoid"] == ["cheap"]
    assert body["timezone"] == "Europe/Madrid"
    fetched = await client.get(f"{URL}/{body['id']}", headers=identity_for(tenant, "viewer"))
    assert fetched.json() == body


async def test_brand_names_are_unique_per_workspace_whatever_their_case(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    await client.post(URL, json=ACME, headers=headers)

    again = await client.post(URL, json={**ACME, "name": "ACME coffee"}, headers=headers)
    elsewhere = await client.post(
        URL, json=ACME, headers=identity_for(UUID(int=tenant.int ^ 1), "owner")
    )

    assert again.status_code == 409
    assert again.json()["code"] == "brand_name_taken"
    assert elsewhere.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**ACME, "timezone": "Mars/Olympus"}, id="unknown-zone"),
        pytest.param({**ACME, "timezone": "localtime"}, id="localtime"),
        pytest.param({**ACME, "timezone": "../../etc/passwd"}, id="path"),
        pytest.param({**ACME, "voice": {"tone": "x", "mood": "y"}}, id="unknown-voice-field"),
        pytest.param({**ACME, "voice": {"keywords": ["x"] * 51}}, id="too-many-keywords"),
        pytest.param({**ACME, "voice": {"language": "Spanish"}}, id="bad-language"),
        pytest.param({**ACME, "default_channels": ["myspace"]}, id="unknown-channel"),
        pytest.param({**ACME, "name": ""}, id="blank-name"),
    ],
)
async def test_an_invalid_brand_is_422_and_nothing_is_stored(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, body: dict[str, Any]
) -> None:
    headers = identity_for(tenant, "editor")

    response = await client.post(URL, json=body, headers=headers)

    assert response.status_code == 422, response.text
    assert (await client.get(URL, headers=headers)).json()["items"] == []


async def test_updating_the_voice_replaces_it_and_keeps_the_rest(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    """A member sent as null is kept too (schemathesis found ``"name": null`` a 500)."""
    headers = identity_for(tenant, "editor")
    brand = (await client.post(URL, json=ACME, headers=headers)).json()

    response = await client.patch(
        f"{URL}/{brand['id']}", json={"voice": {"tone": "playful"}, "name": None}, headers=headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["voice"]["tone"] == "playful"
    assert body["voice"]["keywords"] == []
    assert (body["name"], body["timezone"]) == ("Acme Coffee", "Europe/Madrid")


async def test_a_viewer_cannot_create_or_change_brands(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    brand = (await client.post(URL, json=ACME, headers=identity_for(tenant, "editor"))).json()
    viewer = identity_for(tenant, "viewer")

    created = await client.post(URL, json={**ACME, "name": "Other"}, headers=viewer)
    changed = await client.patch(f"{URL}/{brand['id']}", json={"name": "Mine"}, headers=viewer)

    assert (created.status_code, changed.status_code) == (403, 403)


async def test_another_tenants_brand_is_404_and_cannot_carry_a_campaign(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    brand = (await client.post(URL, json=ACME, headers=identity_for(tenant, "editor"))).json()
    intruder = identity_for(UUID(int=tenant.int ^ 1), "owner")

    fetched = await client.get(f"{URL}/{brand['id']}", headers=intruder)
    changed = await client.patch(f"{URL}/{brand['id']}", json={"name": "Mine"}, headers=intruder)
    campaign = await client.post(
        "/v1/planner/campaigns", json={"brand_id": brand["id"], "name": "Hijack"}, headers=intruder
    )

    assert [fetched.status_code, changed.status_code, campaign.status_code] == [404, 404, 404]
    assert campaign.json()["code"] == "brand_not_found"


async def test_a_campaign_without_channels_takes_the_brands_default_channels(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    body = {**ACME, "default_channels": ["linkedin", "blog"]}
    brand = (await client.post(URL, json=body, headers=headers)).json()

    campaign = await client.post(
        "/v1/planner/campaigns", json={"brand_id": brand["id"], "name": "Q1"}, headers=headers
    )

    assert campaign.json()["channels"] == ["linkedin", "blog"]
