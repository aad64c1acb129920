"""Through Traefik: every answer carries the RateLimit fields; N pass, then 429."""

import re

import httpx
import pytest

from .conftest import Account, sign_up

pytestmark = pytest.mark.integration

TENANT_QUOTA = 100  # the test stack's starter plan (root conftest.py)


async def test_the_tenant_quota_passes_exactly_n_then_429_with_the_fields(
    edge: httpx.AsyncClient,
) -> None:
    account: Account = await sign_up(edge)
    answers = [
        await edge.get("/v1/planner/campaigns", headers=account.headers)
        for _ in range(TENANT_QUOTA + 1)
    ]
    assert [a.status_code for a in answers].count(200) == TENANT_QUOTA
    assert answers[-1].status_code == 429
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert answers[0].headers["ratelimit-policy"] == f'"tenant";q={TENANT_QUOTA};w=60'
    assert answers[0].headers["ratelimit"] == f'"tenant";r={TENANT_QUOTA - 1};t=60'
    # The window resets 60 s after its first hit: by the last allowed request that is 60 s
    # away less however long the hundred requests took (a second or two on a busy machine).
    last = re.fullmatch(r'"tenant";r=0;t=(\d+)', answers[-2].headers["ratelimit"])
    assert last is not None, answers[-2].headers["ratelimit"]
    assert 50 <= int(last.group(1)) <= 60


async def test_a_client_cannot_forge_the_fields(edge: httpx.AsyncClient, account: Account) -> None:
    forged = {**account.headers, "RateLimit": '"tenant";r=999999;t=1'}
    response = await edge.get("/v1/planner/campaigns", headers=forged)
    assert response.headers["ratelimit"] != '"tenant";r=999999;t=1'


async def test_public_auth_routes_carry_the_per_ip_fields(edge: httpx.AsyncClient) -> None:
    response = await edge.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": "x" * 12}
    )
    assert response.status_code == 401
    assert response.headers["ratelimit-policy"].startswith('"ip-auth";q=')
