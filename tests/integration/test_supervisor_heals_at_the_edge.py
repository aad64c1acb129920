"""kill -9 of the workers while a month is being written: the supervisor brings them back and
every post still ends ``draft_ready`` (the seed of this test: before the watchdog, all posts
of such a month stayed ``generating`` for good)."""

import asyncio
from collections import Counter

import httpx
import pytest

from bai_platform.devstack import Stack

from .conftest import Account, december_campaign, new_brand

pytestmark = pytest.mark.integration

KILLED = ("creator-worker", "planner-worker")
POSTS = 22  # December at instagram 3 a week and linkedin 2 a week


async def _schedule_month(edge: httpx.AsyncClient, account: Account) -> str:
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json=december_campaign(await new_brand(edge, account)),
        headers=account.headers,
    )
    assert campaign.status_code == 201, campaign.text
    campaign_id: str = campaign.json()["id"]
    scheduled = await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/schedule",
        json={"month": "2026-12"},
        headers=account.headers,
    )
    assert scheduled.status_code == 202, scheduled.text
    return campaign_id


async def _states(
    edge: httpx.AsyncClient, account: Account, campaign_id: str, last: Counter[str]
) -> Counter[str]:
    """How many posts are in each state (``last`` when the tenant's rate limit says wait)."""
    page = await edge.get(
        f"/v1/planner/campaigns/{campaign_id}/posts?month=2026-12", headers=account.headers
    )
    if page.status_code == 429:
        await asyncio.sleep(float(page.headers.get("retry-after", "1")))
        return last
    assert page.status_code == 200, page.text
    return Counter(post["state"] for post in page.json()["items"])


async def test_workers_killed_mid_month_come_back_and_finish_every_post(
    system: Stack, edge: httpx.AsyncClient, account: Account
) -> None:
    before = {name: system.watchdog.restarts(name) for name in KILLED}
    campaign_id = await _schedule_month(edge, account)
    killed = {name: system.crash(name) for name in KILLED}

    states: Counter[str] = Counter()
    try:
        async with asyncio.timeout(90):
            while states != {"draft_ready": POSTS}:
                await asyncio.sleep(1)
                states = await _states(edge, account, campaign_id, states)
    except TimeoutError:
        raise AssertionError(f"posts stuck after the workers were killed: {states}") from None

    for name, pid in killed.items():
        assert system.watchdog.restarts(name) == before[name] + 1
        assert system.processes[name].pid != pid
