"""Campaign cadence validation and state moves (draft, active, paused, completed, archived)."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

IdentityFor = Callable[[UUID, str], dict[str, str]]
URL = "/v1/planner/campaigns"


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await client.post(URL, json=body, headers=headers)


@pytest.mark.parametrize(
    ("cadence", "why"),
    [
        ({"instagram": {"per_week": 50}}, "per_week"),
        ({"instagram": {"per_day": 8}}, "per_day"),
        ({"instagram": {"per_week": 15, "weekdays": ["mon", "tue"]}}, "at most 7 per day"),
        ({"instagram": {"per_week": 3, "per_day": 1}}, "exactly one"),
        ({"instagram": {}}, "exactly one"),
        ({"instagram": {"per_day": 3, "times": ["09:00"]}}, "only 1 times"),
        ({"instagram": {"per_week": 3, "weekdays": ["someday"]}}, "weekdays"),
        ({"tiktok": {"per_week": 3}}, "does not use"),
    ],
)
async def test_an_impossible_cadence_is_422_naming_the_field(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    cadence: dict[str, Any],
    why: str,
) -> None:
    headers = identity_for(tenant, "editor")
    body = {"brand_id": brand, "name": "C", "channels": ["instagram"], "cadence": cadence}

    response = await create(client, headers, body)

    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any("cadence" in e["loc"] for e in errors)
    assert why in str(errors)
    assert (await client.get(URL, headers=headers)).json()["items"] == []


async def test_a_cadence_with_days_and_times_is_kept(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    cadence = {
        "instagram": {"per_week": 4, "weekdays": ["tue", "thu"], "times": ["09:00", "18:30"]}
    }
    body = {"brand_id": brand, "name": "C", "channels": ["instagram"], "cadence": cadence}

    response = await create(client, identity_for(tenant, "editor"), body)

    assert response.status_code == 201, response.text
    kept = response.json()["cadence"]["instagram"]
    assert (kept["per_week"], kept["weekdays"], kept["times"]) == (
        4,
        ["tue", "thu"],
        ["09:00:00", "18:30:00"],
    )


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (["active", "paused", "active", "completed", "archived"], True),
        (["archived", "active"], False),
        (["completed"], False),
        (["active", "draft"], False),
    ],
)
async def test_campaign_states_move_only_along_the_allowed_paths(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    path: list[str],
    allowed: bool,
) -> None:
    headers = identity_for(tenant, "editor")
    campaign = (await create(client, headers, {"brand_id": brand, "name": "C"})).json()

    answers = [
        await client.patch(f"{URL}/{campaign['id']}", json={"state": s}, headers=headers)
        for s in path
    ]

    *before, last = answers
    assert all(a.status_code == 200 for a in before)
    if allowed:
        assert last.status_code == 200
    else:
        assert last.status_code == 409
        assert last.json()["code"] == "invalid_transition"
        assert "allowed" in last.json()


async def test_an_update_keeps_dates_in_order(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    body = {"brand_id": brand, "name": "C", "starts_on": "2026-12-01", "ends_on": "2026-12-31"}
    campaign = (await create(client, headers, body)).json()

    response = await client.patch(
        f"{URL}/{campaign['id']}", json={"ends_on": "2026-11-01"}, headers=headers
    )

    assert response.status_code == 422
    after = await client.get(f"{URL}/{campaign['id']}", headers=headers)
    assert after.json()["ends_on"] == "2026-12-31"


async def test_the_brief_and_name_can_be_changed(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    campaign = (await create(client, headers, {"brand_id": brand, "name": "C"})).json()

    response = await client.patch(
        f"{URL}/{campaign['id']}", json={"name": "Winter", "brief": "Warm drinks"}, headers=headers
    )

    assert (response.json()["name"], response.json()["brief"]) == ("Winter", "Warm drinks")
