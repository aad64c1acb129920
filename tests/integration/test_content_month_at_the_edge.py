"""A marketing month through the edge of the running system: a brand and a campaign,
December laid out, drafts written by creator's built-in engine, a client review link,
exports and an import, and a post published by the tenant's n8n workflow (a ``pub_``
callback verified by the gateway and routed to the planner)."""

import asyncio
import csv
import io
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from icalendar import Calendar

from bai_platform.webhooks import sign
from bai_testing.workflows import workflow_server

from .conftest import Account, new_december_campaign

pytestmark = pytest.mark.integration

BRAND = {
    "name": "Acme Coffee",
    "timezone": "Europe/Madrid",
    "voice": {
        "tone": "warm",
        "audience": "young professionals",
        "keywords": ["coffee", "mornings"],
        "avoid": ["cheap"],
    },
}
DECEMBER_POSTS = 22  # instagram 3 a week (13) and linkedin 2 a week (9); see test_schedule


async def _poll(
    edge: httpx.AsyncClient, url: str, headers: dict[str, str], done: Callable[[Any], bool]
) -> Any:
    body: Any = None
    try:
        async with asyncio.timeout(30):
            while True:
                body = (await edge.get(url, headers=headers)).json()
                if done(body):
                    return body
                await asyncio.sleep(0.5)
    except TimeoutError:
        # Say where it stuck: the post states (and errors) or the last answer.
        items = body.get("items", []) if isinstance(body, dict) else []
        seen = Counter((i.get("state"), i.get("last_error")) for i in items) or body
        raise AssertionError(f"{url} did not get there in 30 s; last: {seen}") from None


async def _month(edge: httpx.AsyncClient, account: Account) -> tuple[str, str]:
    brand = await edge.post("/v1/planner/brands", json=BRAND, headers=account.headers)
    assert brand.status_code == 201, brand.text
    brand_id: str = brand.json()["id"]
    return brand_id, await new_december_campaign(edge, account, brand_id)


async def test_a_month_is_planned_written_reviewed_and_exported_through_the_edge(
    edge: httpx.AsyncClient, account: Account
) -> None:
    _, campaign_id = await _month(edge, account)
    scheduled = await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/schedule",
        json={"month": "2026-12"},
        headers=account.headers,
    )
    assert scheduled.status_code == 202, scheduled.text
    assert scheduled.json()["created"] == DECEMBER_POSTS

    calendar = f"/v1/planner/campaigns/{campaign_id}/posts?month=2026-12"
    posts = (
        await _poll(
            edge,
            calendar,
            account.headers,
            lambda b: (
                len(b["items"]) == DECEMBER_POSTS
                and all(p["state"] == "draft_ready" for p in b["items"])
            ),
        )
    )["items"]
    assert all("#Coffee" not in p["text"] and "cheap" not in p["text"] for p in posts)
    assert all(p["hashtags"][:2] == ["Coffee", "Mornings"] for p in posts)

    link = await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/review-links",
        json={"month": "2026-12", "reviewer": "client@example.com"},
        headers=account.headers,
    )
    assert link.status_code == 201, link.text
    review_url = link.json()["url"].removeprefix(str(edge.base_url).rstrip("/"))
    view = await edge.get(review_url)  # no account, no token: the link is the credential
    assert view.status_code == 200, view.text
    assert {p["state"] for p in view.json()["posts"]} == {"in_review"}
    first, second = view.json()["posts"][:2]

    approved = await edge.post(f"{review_url}/posts/{first['id']}", json={"decision": "approve"})
    rejected = await edge.post(
        f"{review_url}/posts/{second['id']}",
        json={"decision": "reject", "comment": "Mention the terrace"},
    )
    assert (approved.json()["state"], rejected.json()["state"]) == ("approved", "generating")
    rewritten = await _poll(
        edge,
        f"/v1/planner/posts/{second['id']}",
        account.headers,
        lambda b: b["state"] == "draft_ready",
    )
    assert rewritten["content_version"] == 2
    assert rewritten["text"] != second["text"]

    # Every draft held one post credit, charged when written (23 with the rewrite); the
    # starter grant was 100. Settling may trail the drafts by a pass of the saga.
    balance = await _poll(
        edge,
        "/v1/billing/balance",
        account.headers,
        lambda b: b["balances"]["posts"] == 100 - DECEMBER_POSTS - 1,
    )
    assert balance["balances"]["posts"] == 77
    job = rewritten["generation_job_id"]
    ledger = await _poll(  # the commit follows the draft by one pass of the saga
        edge,
        "/v1/billing/ledger?limit=200",
        account.headers,
        lambda b: any(e["entry"] == "commit" and e["reference"] == job for e in b["items"]),
    )
    entries = [(e["entry"], e["reference"]) for e in ledger["items"]]
    assert ("reservation", job) in entries
    assert sum(1 for entry, _ in entries if entry == "reservation") == DECEMBER_POSTS + 1

    exported = await edge.get(
        f"/v1/planner/campaigns/{campaign_id}/calendar.csv?month=2026-12", headers=account.headers
    )
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert len(rows) == DECEMBER_POSTS
    ics = await edge.get(
        f"/v1/planner/campaigns/{campaign_id}/calendar.ics?month=2026-12", headers=account.headers
    )
    events = Calendar.from_ical(ics.content).walk("VEVENT")
    assert len(events) == DECEMBER_POSTS

    upload = (
        "channel,scheduled_at,text,hashtags\ninstagram,2026-12-05 12:30,Terrace opens,#terrace\n"
    )
    imported = await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/posts/import",
        content=upload.encode(),
        headers={**account.headers, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json() == {"imported": 1}


async def test_a_due_post_is_published_by_the_tenants_workflow_through_a_signed_callback(
    edge: httpx.AsyncClient, account: Account
) -> None:
    brand_id, _ = await _month(edge, account)
    today = datetime.now(ZoneInfo("Europe/Madrid"))
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json={
            "brand_id": brand_id,
            "name": "Now",
            "channels": ["instagram"],
            "starts_on": (today - timedelta(days=1)).date().isoformat(),
            "ends_on": (today + timedelta(days=30)).date().isoformat(),
        },
        headers=account.headers,
    )
    campaign_id = campaign.json()["id"]
    due = (today - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")
    await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/posts/import",
        content=f"channel,scheduled_at,text\ninstagram,{due},Our terrace is open\n".encode(),
        headers={**account.headers, "Content-Type": "text/csv"},
    )
    [post] = (
        await edge.get(f"/v1/planner/campaigns/{campaign_id}/posts", headers=account.headers)
    ).json()["items"]
    secret = "workflow-secret-0123456789"

    async with workflow_server() as workflow:
        target = await edge.put(
            "/v1/planner/publishing-target",
            json={"webhook_url": workflow.url, "secret": secret},
            headers=account.headers,
        )
        assert target.status_code == 200, target.text
        for state in ("approved", "scheduled"):
            moved = await edge.post(
                f"/v1/planner/posts/{post['id']}/transitions",
                json={"to": state},
                headers=account.headers,
            )
            assert moved.status_code == 200, moved.text
        dispatch = await workflow.next_dispatch()

    job = dispatch.json()
    assert job["job_id"].startswith("pub_")
    assert job["post"]["text"] == "Our terrace is open"
    callback = job["callback_url"].removeprefix(str(edge.base_url).rstrip("/"))
    forged = await _callback(edge, callback, job["job_id"], "wrong-secret-0123456789")
    assert forged.status_code == 401
    accepted = await _callback(edge, callback, job["job_id"], secret)
    assert accepted.status_code == 202, accepted.text

    published = await _poll(
        edge,
        f"/v1/planner/posts/{post['id']}",
        account.headers,
        lambda b: b["state"] == "published",
    )
    assert published["last_error"] is None
    history = await edge.get(f"/v1/planner/posts/{post['id']}/history", headers=account.headers)
    assert history.json()["items"][-1]["actor"] == "system:publisher"


async def _callback(edge: httpx.AsyncClient, path: str, job_id: str, secret: str) -> httpx.Response:
    body = json.dumps(
        {"job_id": job_id, "status": "published", "url": "https://instagram.com/p/1"}
    ).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-BAI-Timestamp": str(timestamp),
        "X-BAI-Signature": sign(secret, timestamp, body),
    }
    return await edge.post(path, content=body, headers=headers)
