"""The website chat through the edge: a widget, a visitor token for an allowed origin, a
conversation and a reply, one chat credit spent; other origins and paths refused."""

import asyncio

import httpx
import pytest

from .conftest import Account

pytestmark = pytest.mark.integration

ORIGIN = "https://www.acme.example"
WIDGET = {
    "name": "Acme site",
    "allowed_origins": [ORIGIN],
    "greeting": "Hi! Ask us anything.",
    "knowledge": [{"title": "Opening hours", "text": "We open every day from 8:00 to 20:00."}],
    "voice": {"tone": "warm"},
}


async def test_a_visitor_chats_through_the_edge_and_spends_one_chat_credit(
    edge: httpx.AsyncClient, account: Account
) -> None:
    widget = await edge.post("/v1/creator/widgets", json=WIDGET, headers=account.headers)
    assert widget.status_code == 201, widget.text
    key = widget.json()["public_key"]

    refused = await edge.post(
        "/v1/chat/visitor-token",
        json={"widget_key": key},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    minted = await edge.post(
        "/v1/chat/visitor-token", json={"widget_key": key}, headers={"Origin": ORIGIN}
    )
    assert minted.status_code == 201, minted.text
    assert minted.headers["access-control-allow-origin"] == ORIGIN
    visitor = {"Authorization": f"Bearer {minted.json()['token']}", "Origin": ORIGIN}

    preflight = await edge.options(
        "/v1/creator/chat/conversations",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    started = await edge.post("/v1/creator/chat/conversations", headers=visitor)
    assert started.status_code == 201, started.text
    conversation = started.json()["id"]
    answer = await edge.post(
        f"/v1/creator/chat/{conversation}/messages",
        json={"text": "When do you open?"},
        headers=visitor,
    )
    assert answer.status_code == 200, answer.text
    assert "8:00 to 20:00" in answer.json()["reply"]
    assert answer.headers["access-control-allow-origin"] == ORIGIN  # the page may read it

    elsewhere = await edge.get("/v1/planner/campaigns", headers=visitor)
    assert elsewhere.status_code == 403
    other_origin = await edge.post(
        "/v1/creator/chat/conversations",
        headers={**visitor, "Origin": "https://evil.example"},
    )
    assert other_origin.status_code == 403

    async with asyncio.timeout(10):
        while True:
            balance = (await edge.get("/v1/billing/balance", headers=account.headers)).json()
            if balance["balances"]["chat_messages"] == 199:
                break
            await asyncio.sleep(0.3)
