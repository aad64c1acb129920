"""The road through the edge: signup, a protected create and list, and the refusals."""

import httpx
import pytest

from bai_platform.devstack import Stack

from .conftest import Account, new_brand, sign_up

pytestmark = pytest.mark.integration

CAMPAIGN = {
    "name": "Winter launch",
    "goal": "Sell more coffee",
    "channels": ["instagram"],
    "starts_on": "2026-12-01",
    "ends_on": "2026-12-31",
}


async def test_signup_then_create_and_list_a_campaign_through_the_edge(
    edge: httpx.AsyncClient, account: Account
) -> None:
    body = {**CAMPAIGN, "brand_id": await new_brand(edge, account)}
    created = await edge.post("/v1/planner/campaigns", json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    listed = await edge.get("/v1/planner/campaigns", headers=account.headers)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [created.json()["id"]]


async def test_request_without_a_token_gets_a_problem_401(edge: httpx.AsyncClient) -> None:
    response = await edge.get("/v1/planner/campaigns")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_token"


async def test_service_reached_without_the_gateway_refuses_the_call(
    system: Stack, account: Account
) -> None:
    async with httpx.AsyncClient(base_url=system.service_url("planner")) as direct:
        response = await direct.get("/v1/planner/campaigns", headers=account.headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_tenants_do_not_see_each_others_campaigns(
    edge: httpx.AsyncClient, account: Account
) -> None:
    other = await sign_up(edge, workspace="Other Bakery")
    body = {**CAMPAIGN, "brand_id": await new_brand(edge, account)}
    created = await edge.post("/v1/planner/campaigns", json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    listed = await edge.get("/v1/planner/campaigns", headers=other.headers)
    assert listed.json()["items"] == []


async def test_a_client_sent_identity_header_is_never_trusted(
    edge: httpx.AsyncClient, account: Account
) -> None:
    forged = {"X-BAI-Identity": "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ4In0."}
    alone = await edge.get("/v1/planner/campaigns", headers=forged)
    assert alone.status_code == 401
    overwritten = await edge.get("/v1/planner/campaigns", headers={**forged, **account.headers})
    assert overwritten.status_code == 200  # Traefik replaced it with the gateway's
