"""Nothing committed is lost: an event written while NATS is down arrives once it is back.

While NATS is down the relay has nothing to publish to, so the row simply waits, unsent. Once
NATS is back it is published, and exactly once applied: the test waits until planner's
stream has no message left for any consumer (nothing pending, nothing awaiting an ack), so a
redelivery would have been processed by then, and then counts what was applied.
"""

import asyncio
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from bai_platform.devstack import Stack

from .conftest import Account, new_brand

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _query(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.admin_dsn())
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _wait_for_brief(edge: httpx.AsyncClient, account: Account, campaign_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            brief = await edge.get(
                f"/v1/creator/campaigns/{campaign_id}/brief", headers=account.headers
            )
            if brief.status_code == 200:
                return
            assert brief.status_code == 404, brief.text
            await asyncio.sleep(0.5)  # 60 polls at most: well inside the test tenant quota


async def _planner_stream_delivered(stack: Stack) -> None:
    """Until every consumer of planner's stream has nothing pending and nothing unacked."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        async with asyncio.timeout(30):
            while any(
                info.num_pending or info.num_ack_pending
                for info in await js.consumers_info("PLANNER")
            ):
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def test_event_committed_while_nats_is_down_reaches_creator_exactly_once(
    system: Stack, edge: httpx.AsyncClient, account: Account
) -> None:
    body = {"name": "Outage launch", "brand_id": await new_brand(edge, account)}
    system.stop_component("nats")
    try:
        created = await edge.post("/v1/planner/campaigns", json=body, headers=account.headers)
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        [row] = await _query(
            system,
            "SELECT id, published_at FROM planner.outbox "
            "WHERE convert_from(payload, 'UTF8') LIKE '%' || $1 || '%'",
            campaign_id,
        )
        assert row["published_at"] is None
    finally:
        system.restart_nats()

    await _wait_for_brief(edge, account, campaign_id)
    await _planner_stream_delivered(system)
    inbox = await _query(
        system, "SELECT event_id FROM creator.inbox WHERE event_id = $1", row["id"]
    )
    briefs = await _query(
        system,
        "SELECT count(*) AS n FROM creator.campaign_briefs WHERE campaign_id = $1::uuid",
        campaign_id,
    )
    assert len(inbox) == 1
    assert briefs[0]["n"] == 1
    [published] = await _query(
        system, "SELECT published_at FROM planner.outbox WHERE id = $1", row["id"]
    )
    assert published["published_at"] is not None
