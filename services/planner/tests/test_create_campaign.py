"""POST /v1/planner/campaigns: the stored row, its outbox event, and every refusal."""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from bai_contracts import CampaignCreated
from bai_platform.envelope import Envelope
from planner.models import Campaign

IdentityFor = Callable[[UUID, str], dict[str, str]]
CampaignsOf = Callable[[UUID], Awaitable[list[Campaign]]]
OutboxOf = Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]

URL = "/v1/planner/campaigns"
SPRING_SALE: dict[str, Any] = {
    "name": "Spring sale",
    "goal": "Fill the terrace on weekday afternoons",
    "channels": ["instagram", "email"],
    "starts_on": "2026-03-01",
    "ends_on": "2026-03-31",
}


async def test_create_returns_201_with_the_stored_campaign(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    before = datetime.now(UTC)

    response = await client.post(
        URL, json={**SPRING_SALE, "brand_id": brand}, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert {k: body[k] for k in SPRING_SALE} == SPRING_SALE
    assert body["state"] == "draft"
    assert datetime.fromisoformat(body["created_at"]) >= before - timedelta(seconds=5)
    assert set(body) == {
        *SPRING_SALE,
        "brand_id",
        "brief",
        "cadence",
        "progress",
        "id",
        "state",
        "created_at",
    }
    [stored] = await campaigns_of(tenant)
    assert str(stored.id) == body["id"]
    assert stored.name == "Spring sale"
    assert stored.channels == ["instagram", "email"]


@pytest.mark.parametrize("role", ["owner", "admin", "editor"])
async def test_every_editing_role_may_create_a_campaign(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor, role: str
) -> None:
    response = await client.post(
        URL, json={"brand_id": brand, "name": "Launch"}, headers=identity_for(tenant, role)
    )

    assert response.status_code == 201, response.text


async def test_created_campaign_has_exactly_one_campaign_created_event_in_the_outbox(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    outbox_of: OutboxOf,
) -> None:
    response = await client.post(
        URL, json={**SPRING_SALE, "brand_id": brand}, headers=identity_for(tenant, "owner")
    )
    assert response.status_code == 201, response.text
    campaign_id = response.json()["id"]

    [(subject, envelope)] = await outbox_of(tenant)

    assert subject == CampaignCreated.subject == "bai.planner.campaign.created.v1"
    assert envelope.type == subject
    assert envelope.source == "planner"
    assert envelope.tenantid == str(tenant)
    assert envelope.subject == campaign_id
    event = envelope.payload(CampaignCreated)
    assert str(event.campaign_id) == campaign_id
    assert event.name == SPRING_SALE["name"]
    assert event.goal == SPRING_SALE["goal"]
    assert event.channels == SPRING_SALE["channels"]
    assert event.starts_on is not None
    assert event.starts_on.isoformat() == SPRING_SALE["starts_on"]


async def test_each_created_campaign_gets_its_own_event(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    outbox_of: OutboxOf,
) -> None:
    headers = identity_for(tenant, "editor")
    ids = set()
    for name in ("One", "Two"):
        response = await client.post(URL, json={"brand_id": brand, "name": name}, headers=headers)
        assert response.status_code == 201, response.text
        ids.add(response.json()["id"])

    events = await outbox_of(tenant)

    assert {e.payload(CampaignCreated).campaign_id.hex for _, e in events} == {
        UUID(i).hex for i in ids
    }
    assert len({e.id for _, e in events}) == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({k: v for k, v in SPRING_SALE.items() if k != "name"}, id="missing-name"),
        pytest.param({**SPRING_SALE, "name": "   "}, id="blank-name"),
        pytest.param({**SPRING_SALE, "name": "x" * 201}, id="name-too-long"),
        pytest.param({**SPRING_SALE, "channels": ["instagram", "myspace"]}, id="unknown-channel"),
        pytest.param(
            {**SPRING_SALE, "starts_on": "2026-03-31", "ends_on": "2026-03-01"},
            id="ends-before-starts",
        ),
        pytest.param(
            {**SPRING_SALE, "tenant_id": "00000000-0000-0000-0000-000000000001"},
            id="extra-tenant_id",
        ),
        pytest.param({**SPRING_SALE, "state": "active"}, id="extra-state"),
        pytest.param({**SPRING_SALE, "starts_on": "next monday"}, id="not-a-date"),
        pytest.param({**SPRING_SALE, "name": "Spring\x00sale"}, id="nul-in-name"),
        pytest.param({**SPRING_SALE, "goal": "More\x00guests"}, id="nul-in-goal"),
        pytest.param({**SPRING_SALE, "channels": ["blog"] * 9}, id="too-many-channels"),
    ],
)
async def test_invalid_body_is_422_problem_and_writes_nothing(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
    outbox_of: OutboxOf,
    body: dict[str, Any],
) -> None:
    # A real brand, so that the one thing wrong in each body is the thing named.
    response = await client.post(
        URL, json={"brand_id": brand, **body}, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["code"] == "validation_failed"
    assert problem["errors"]
    assert all("brand_id" not in error["loc"] for error in problem["errors"])
    assert await campaigns_of(tenant) == []
    assert await outbox_of(tenant) == []


async def test_validation_problem_does_not_echo_the_submitted_values(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    body = {**SPRING_SALE, "brand_id": brand, "channels": ["secret-channel-value"]}

    response = await client.post(URL, json=body, headers=identity_for(tenant, "editor"))

    assert response.status_code == 422
    assert "secret-channel-value" not in response.text


async def test_a_start_date_equal_to_the_end_date_is_accepted(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    body = {
        "brand_id": brand,
        "name": "One day",
        "starts_on": "2026-05-01",
        "ends_on": "2026-05-01",
    }

    response = await client.post(URL, json=body, headers=identity_for(tenant, "editor"))

    assert response.status_code == 201, response.text


async def test_viewer_cannot_create_a_campaign_and_nothing_is_written(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
    outbox_of: OutboxOf,
) -> None:
    response = await client.post(
        URL, json={**SPRING_SALE, "brand_id": brand}, headers=identity_for(tenant, "viewer")
    )

    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "forbidden"
    assert await campaigns_of(tenant) == []
    assert await outbox_of(tenant) == []


async def test_viewer_may_still_list_campaigns(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    created = await client.post(
        URL, json={**SPRING_SALE, "brand_id": brand}, headers=identity_for(tenant, "editor")
    )
    assert created.status_code == 201, created.text

    response = await client.get(URL, headers=identity_for(tenant, "viewer"))

    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["items"]] == [created.json()["id"]]


async def test_body_over_one_mebibyte_is_413_and_writes_nothing(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    body = {**SPRING_SALE, "brand_id": brand, "goal": "x" * (1024 * 1024)}

    response = await client.post(URL, json=body, headers=identity_for(tenant, "editor"))

    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"
    assert await campaigns_of(tenant) == []


async def test_a_streamed_body_over_one_mebibyte_is_413_and_writes_nothing(
    client: httpx.AsyncClient,
    tenant: UUID,
    brand: str,
    identity_for: IdentityFor,
    campaigns_of: CampaignsOf,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "Big", "goal": "'
        for _ in range(11):
            yield b"x" * 100_000
        yield b'"}'

    headers = {**identity_for(tenant, "editor"), "content-type": "application/json"}
    response = await client.post(URL, content=chunks(), headers=headers)

    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert await campaigns_of(tenant) == []


async def test_a_channel_named_twice_is_kept_once_in_its_first_place(
    client: httpx.AsyncClient, tenant: UUID, brand: str, identity_for: IdentityFor
) -> None:
    body = {"brand_id": brand, "name": "Launch", "channels": ["blog", "instagram", "blog"]}

    response = await client.post(URL, json=body, headers=identity_for(tenant, "editor"))

    assert response.status_code == 201, response.text
    assert response.json()["channels"] == ["blog", "instagram"]
