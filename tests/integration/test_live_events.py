"""Live events through the edge: a status change reaches the workspace's browsers at once."""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from .conftest import Account, new_brand, sign_up

pytestmark = pytest.mark.integration
CREATED = "bai.planner.campaign.created.v1"


@dataclass
class Listener:
    """An EventSource-like client: collects (id, event, data) frames as they arrive."""

    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: dict[str, float] = field(default_factory=dict)
    # The first line (the retry hint) is sent once the gateway holds the connection.
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self, response: httpx.Response) -> None:
        frame: dict[str, Any] = {}
        async for line in response.aiter_lines():
            self.opened.set()
            if not line:
                if "event" in frame:
                    self.events.append(frame)
                    self.arrived[frame.get("id", "")] = time.monotonic()
                frame = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                frame[name] = json.loads(value) if name == "data" else value

    async def wait_for(self, predicate: Any, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def listening(
    edge: httpx.AsyncClient, account: Account, last_event_id: str | None = None
) -> AsyncIterator[Listener]:
    headers = dict(account.headers)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    listener = Listener()
    async with edge.stream(
        "GET", "/v1/events", headers=headers, timeout=httpx.Timeout(10.0, read=None)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        task = asyncio.create_task(listener.read(response))
        try:
            async with asyncio.timeout(10):
                await listener.opened.wait()
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


def _campaign(campaign_id: str) -> Any:
    return lambda e: e.get("event") == CREATED and e["data"]["data"]["campaign_id"] == campaign_id


async def _create(edge: httpx.AsyncClient, account: Account, name: str) -> tuple[str, float]:
    brand_id = await new_brand(edge, account, name=f"Brand of {name}")
    response = await edge.post(
        "/v1/planner/campaigns", json={"brand_id": brand_id, "name": name}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], time.monotonic()


async def test_a_status_change_reaches_the_workspace_within_a_second(
    edge: httpx.AsyncClient, account: Account
) -> None:
    stranger = await sign_up(edge)
    async with listening(edge, account) as mine, listening(edge, stranger) as theirs:
        campaign_id, created_at = await _create(edge, account, "Live launch")
        event = await mine.wait_for(_campaign(campaign_id))
        assert mine.arrived[event["id"]] - created_at < 1.0
        # The stranger's own event comes after mine through the same feed: once it is
        # there, mine would have been too, had it leaked.
        their_id, _ = await _create(edge, stranger, "Their launch")
        await theirs.wait_for(_campaign(their_id), within=15.0)
        assert not any(_campaign(campaign_id)(e) for e in theirs.events)


async def test_last_event_id_resumes_what_was_missed(
    edge: httpx.AsyncClient, account: Account
) -> None:
    async with listening(edge, account) as witness:
        async with listening(edge, account) as first:
            seen, _ = await _create(edge, account, "Seen")
            last = (await first.wait_for(_campaign(seen)))["id"]
        missed, _ = await _create(edge, account, "Missed while away")
        # Sent while nobody resumed: it can only come back as a replay.
        await witness.wait_for(_campaign(missed), within=15.0)
    async with listening(edge, account, last_event_id=last) as resumed:
        await resumed.wait_for(_campaign(missed), within=2.0)
        assert not any(_campaign(seen)(e) for e in resumed.events)


async def test_an_unknown_last_event_id_asks_the_client_to_refetch(
    edge: httpx.AsyncClient, account: Account
) -> None:
    async with listening(edge, account, last_event_id="PLANNER:999999999") as listener:
        await listener.wait_for(lambda e: e.get("event") == "reset", within=2.0)


async def test_a_reconnect_with_the_resets_id_resumes_instead_of_resetting_again(
    edge: httpx.AsyncClient, account: Account
) -> None:
    # What a browser's EventSource does: it keeps the last id it read, the reset's, and sends
    # it back when it reconnects.
    async with listening(edge, account, last_event_id="PLANNER:999999999") as listener:
        reset = await listener.wait_for(lambda e: e.get("event") == "reset", within=2.0)
    assert reset["id"] != "PLANNER:999999999"
    missed, _ = await _create(edge, account, "Created after the reset")
    async with listening(edge, account, last_event_id=reset["id"]) as resumed:
        await resumed.wait_for(_campaign(missed), within=5.0)
        assert not any(e.get("event") == "reset" for e in resumed.events)


async def test_live_events_need_a_token(edge: httpx.AsyncClient) -> None:
    response = await edge.get("/v1/events")
    assert response.status_code == 401
