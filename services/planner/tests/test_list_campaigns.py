"""GET /v1/planner/campaigns: tenant-scoped, newest first, keyset cursor pages."""

import base64
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

IdentityFor = Callable[[UUID, str], dict[str, str]]

URL = "/v1/planner/campaigns"


async def create(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> str:
    brand = await client.post(
        "/v1/planner/brands", json={"name": f"Brand of {name} {uuid4().hex}"}, headers=headers
    )
    assert brand.status_code == 201, brand.text
    body = {"brand_id": brand.json()["id"], "name": name}
    response = await client.post(URL, json=body, headers=headers)
    assert response.status_code == 201, response.text
    campaign_id: str = response.json()["id"]
    return campaign_id


async def all_pages(
    client: httpx.AsyncClient, headers: dict[str, str], limit: int
) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        response = await client.get(URL, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        pages.append(page)
        if page["next_cursor"] is None:
            return pages
        assert len(pages) < 10, "pagination does not end"
        params = {"limit": limit, "cursor": page["next_cursor"]}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_a_new_tenant_lists_no_campaigns(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.get(URL, headers=identity_for(tenant, "viewer"))

    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


async def test_a_tenant_lists_none_of_another_tenants_campaigns(
    client: httpx.AsyncClient, identity_for: IdentityFor
) -> None:
    tenant_a, tenant_b = uuid4(), uuid4()
    a_ids = {await create(client, identity_for(tenant_a, "editor"), f"A{i}") for i in range(3)}
    b_id = await create(client, identity_for(tenant_b, "editor"), "B")

    a_list = await client.get(URL, headers=identity_for(tenant_a, "viewer"))
    b_list = await client.get(URL, headers=identity_for(tenant_b, "owner"))

    assert {c["id"] for c in a_list.json()["items"]} == a_ids
    assert [c["id"] for c in b_list.json()["items"]] == [b_id]


async def test_five_campaigns_in_pages_of_two_come_newest_first_in_three_pages(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    created = [await create(client, headers, f"Campaign {i}") for i in range(5)]

    pages = await all_pages(client, headers, limit=2)

    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    listed = [c["id"] for p in pages for c in p["items"]]
    assert listed == list(reversed(created))
    assert len(set(listed)) == 5
    assert [p["next_cursor"] is None for p in pages] == [False, False, True]


async def test_a_full_last_page_has_no_next_cursor(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    created = [await create(client, headers, f"Campaign {i}") for i in range(4)]

    pages = await all_pages(client, headers, limit=2)

    assert [[c["id"] for c in p["items"]] for p in pages] == [created[:1:-1], created[1::-1]]


async def test_a_campaign_created_while_paging_does_not_shift_later_pages(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    created = [await create(client, headers, f"Campaign {i}") for i in range(4)]
    first = (await client.get(URL, params={"limit": 2}, headers=headers)).json()

    await create(client, headers, "Late arrival")
    second = await client.get(
        URL, params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    )

    assert second.status_code == 200, second.text
    assert [c["id"] for c in second.json()["items"]] == [created[1], created[0]]


async def test_another_tenants_cursor_reveals_none_of_its_campaigns(
    client: httpx.AsyncClient, identity_for: IdentityFor
) -> None:
    tenant_a, tenant_b = uuid4(), uuid4()
    a_headers = identity_for(tenant_a, "editor")
    for i in range(3):
        await create(client, a_headers, f"A{i}")
    cursor = (await client.get(URL, params={"limit": 1}, headers=a_headers)).json()["next_cursor"]
    assert cursor is not None

    response = await client.get(
        URL, params={"cursor": cursor}, headers=identity_for(tenant_b, "editor")
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="garbage"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param(b64(b"\xff\xfe\xfd"), id="not-utf8"),
        pytest.param(b64(b'{"created_at": "2026-01-01"}'), id="json-object"),
        pytest.param(b64(b"null"), id="json-null"),
        pytest.param(b64(b"[1, 2]"), id="numbers"),
        pytest.param(b64(json.dumps(["yesterday", str(uuid4())]).encode()), id="bad-time"),
        pytest.param(
            b64(json.dumps(["2026-01-01T00:00:00+00:00", "not-a-uuid"]).encode()), id="bad-id"
        ),
        pytest.param(
            b64(json.dumps(["2026-01-01T00:00:00+00:00", str(uuid4()), "x"]).encode()),
            id="three-parts",
        ),
    ],
)
async def test_a_tampered_cursor_is_400_invalid_cursor(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, cursor: str
) -> None:
    response = await client.get(
        URL, params={"cursor": cursor}, headers=identity_for(tenant, "viewer")
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(["2026-01-01T00:00:00+00:00", 5], id="id-not-a-string"),
        pytest.param(["0001-01-01T00:00:00+14:00", str(uuid4())], id="time-before-year-1-utc"),
    ],
)
async def test_a_well_formed_cursor_naming_an_impossible_position_is_400_invalid_cursor(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, position: list[Any]
) -> None:
    cursor = b64(json.dumps(position).encode())

    response = await client.get(
        URL, params={"cursor": cursor}, headers=identity_for(tenant, "viewer")
    )

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_cursor"


async def test_a_hand_made_cursor_is_only_a_position_within_the_callers_tenant(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    created = [await create(client, headers, f"Campaign {i}") for i in range(3)]
    future = b64(json.dumps(["2999-01-01T00:00:00+00:00", str(uuid4())]).encode())

    response = await client.get(URL, params={"cursor": future}, headers=headers)

    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["items"]] == list(reversed(created))


@pytest.mark.parametrize("limit", [0, -1, 201, 10_000])
async def test_a_limit_outside_1_to_200_is_422(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, limit: int
) -> None:
    response = await client.get(
        URL, params={"limit": limit}, headers=identity_for(tenant, "viewer")
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_failed"


async def test_the_largest_limit_is_accepted(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.get(URL, params={"limit": 200}, headers=identity_for(tenant, "viewer"))

    assert response.status_code == 200, response.text
