"""Generation by the tenant's n8n workflow, through the edge of the running system: the
workflow (a local stand-in) receives signed jobs and calls back signed results, which the
gateway verifies and routes to creator; the planner's posts become drafts."""

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from bai_platform.webhooks import sign, verify_signature
from bai_testing.workflows import workflow_server

from .conftest import Account, new_brand, new_campaign

pytestmark = pytest.mark.integration

SECRET = "n8n-workflow-secret-0123456789"


async def _post_callback(
    edge: httpx.AsyncClient, job: dict[str, Any], body: dict[str, Any], secret: str = SECRET
) -> httpx.Response:
    raw = json.dumps(body).encode()
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-BAI-Timestamp": str(stamp),
        "X-BAI-Signature": sign(secret, stamp, raw),
    }
    path = job["callback_url"].removeprefix(str(edge.base_url).rstrip("/"))
    return await edge.post(path, content=raw, headers=headers)


async def test_a_month_is_written_by_the_tenants_n8n_workflow(
    edge: httpx.AsyncClient, account: Account
) -> None:
    brand_id = await new_brand(edge, account)
    campaign_id = await new_campaign(
        edge, account, brand_id, {"x": {"per_week": 1}}, ends_on="2026-12-14"
    )

    async with workflow_server() as workflow:
        engine = await edge.put(
            "/v1/creator/engine",
            json={"type": "n8n", "webhook_url": workflow.url, "secret": SECRET},
            headers=account.headers,
        )
        assert engine.status_code == 200, engine.text
        assert "secret" not in engine.json()
        scheduled = await edge.post(
            f"/v1/planner/campaigns/{campaign_id}/schedule",
            json={"month": "2026-12"},
            headers=account.headers,
        )
        created = scheduled.json()["created"]
        assert created == 2  # Mondays 7 and 14
        jobs = [await workflow.next_dispatch(after=n) for n in range(created)]

    for dispatched in jobs:
        verify_signature(  # raises when the signature does not match the raw body
            secret=SECRET,
            timestamp=dispatched.headers["x-bai-timestamp"],
            signature=dispatched.headers["x-bai-signature"],
            body=dispatched.body,
            now=time.time(),
        )
        job = dispatched.json()
        assert job["kind"] == "generate"
        assert job["constraints"]["max_chars"] == 280
        assert job["campaign"]["brief"] == "Launch the winter blend"

    first = jobs[0].json()
    forged = await _post_callback(edge, first, {"job_id": first["job_id"]}, "not-the-secret-000000")
    assert forged.status_code == 401
    for dispatched in jobs:
        job = dispatched.json()
        body = {
            "job_id": job["job_id"],
            "status": "completed",
            "content": {"text": "Winter blend, out now.", "hashtags": ["#coffee"]},
        }
        for _ in range(2):  # n8n retrying a callback: the second changes nothing
            accepted = await _post_callback(edge, job, body)
            assert accepted.status_code == 202, accepted.text

    url = f"/v1/planner/campaigns/{campaign_id}/posts?month=2026-12"
    async with asyncio.timeout(30):
        while True:
            posts = (await edge.get(url, headers=account.headers)).json()["items"]
            if posts and all(p["state"] == "draft_ready" for p in posts):
                break
            await asyncio.sleep(0.5)
    assert {p["text"] for p in posts} == {"Winter blend, out now."}
    assert {p["content_version"] for p in posts} == {1}
    versions = await edge.get(
        f"/v1/creator/posts/{posts[0]['id']}/versions", headers=account.headers
    )
    assert [v["version"] for v in versions.json()["items"]] == [1]


async def _posts_settle(
    edge: httpx.AsyncClient, account: Account, campaign_id: str, within: float
) -> list[dict[str, Any]]:
    url = f"/v1/planner/campaigns/{campaign_id}/posts?month=2026-12"
    async with asyncio.timeout(within):
        while True:
            posts: list[dict[str, Any]] = (await edge.get(url, headers=account.headers)).json()[
                "items"
            ]
            if posts and all(p["state"] == "failed" for p in posts):
                return posts
            await asyncio.sleep(1.0)


async def test_a_workflow_that_dies_leads_to_timeouts_and_retries_that_give_credits_back(
    edge: httpx.AsyncClient, account: Account
) -> None:
    brand_id = await new_brand(edge, account)
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json={
            "brand_id": brand_id,
            "name": "Lost in n8n",
            "channels": ["x"],
            "starts_on": "2026-12-01",
            "ends_on": "2026-12-07",
            "cadence": {"x": {"per_week": 1}},
        },
        headers=account.headers,
    )
    campaign_id = campaign.json()["id"]
    async with workflow_server() as workflow:
        await edge.put(
            "/v1/creator/engine",
            json={
                "type": "n8n",
                "webhook_url": workflow.url,
                "secret": SECRET,
                "deadline_seconds": 30,
            },
            headers=account.headers,
        )
        await edge.post(
            f"/v1/planner/campaigns/{campaign_id}/schedule",
            json={"month": "2026-12"},
            headers=account.headers,
        )
        await workflow.next_dispatch()  # taken; then the workflow dies without calling back

    [post] = await _posts_settle(edge, account, campaign_id, within=60)
    job = await edge.get(f"/v1/creator/jobs/{post['generation_job_id']}", headers=account.headers)
    assert (job.json()["state"], job.json()["error"]) == (
        "timed_out",
        "the workflow did not call back in time",
    )

    regenerated = await edge.post(
        f"/v1/planner/posts/{post['id']}/regenerate", json={}, headers=account.headers
    )
    assert regenerated.status_code == 202
    [post] = await _posts_settle(edge, account, campaign_id, within=30)
    retried = (
        await edge.get(f"/v1/creator/jobs/{post['generation_job_id']}", headers=account.headers)
    ).json()
    assert (retried["state"], retried["attempts"]) == ("failed", 3)
    assert "after 3 attempts" in retried["error"]

    async with asyncio.timeout(15):  # both jobs' credits come back
        while True:
            balance = (await edge.get("/v1/billing/balance", headers=account.headers)).json()
            if balance["balances"]["posts"] == 100:
                break
            await asyncio.sleep(0.5)
    ledger = (await edge.get("/v1/billing/ledger", headers=account.headers)).json()["items"]
    releases = {e["reference"] for e in ledger if e["entry"] == "release"}
    assert {post["generation_job_id"], job.json()["id"]} <= releases
    assert not [e for e in ledger if e["entry"] == "commit"]
