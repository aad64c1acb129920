"""The gateway's pages for Traefik's own refusals: problem+json with the refusal's status,
for the statuses the edge asks about and no others."""

import httpx

from .conftest import assert_problem


async def test_the_shields_429_page_is_a_rate_limited_problem_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/edge/problems/429")
    assert_problem(page, status=429, code="rate_limited")
    assert page.headers["retry-after"] == "1"


async def test_traefiks_own_502_and_504_pages_are_problems_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    for status, code in ((502, "bad_gateway"), (504, "gateway_timeout")):
        page = await client.get(f"/edge/problems/{status}")
        assert_problem(page, status=status, code=code)
        assert page.headers["retry-after"] == "2"


async def test_a_status_without_a_page_is_not_found(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/edge/problems/503"), status=404, code="not_found")
    assert (await client.get("/edge/problems/200")).status_code == 422
