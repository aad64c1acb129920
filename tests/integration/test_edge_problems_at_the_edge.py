"""Traefik's own answers are problem+json too: a service whose api cannot be reached gives
the gateway's ``bad_gateway`` page, not Traefik's plain "Bad Gateway"."""

import asyncio

import httpx
import pytest

from bai_platform.devstack import Stack

from .conftest import Account

pytestmark = pytest.mark.integration


async def test_a_service_that_cannot_be_reached_is_a_bad_gateway_problem(
    system: Stack, edge: httpx.AsyncClient, account: Account
) -> None:
    assert (await edge.get("/v1/mining/schedules", headers=account.headers)).status_code == 200
    await asyncio.to_thread(system.stop_component, "mining-api")
    try:
        answer = await edge.get("/v1/mining/schedules", headers=account.headers)
    finally:
        await asyncio.to_thread(system.start_component, "mining-api")

    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "bad_gateway"
    assert answer.headers["retry-after"] == "2"
    assert (await edge.get("/v1/mining/schedules", headers=account.headers)).status_code == 200
