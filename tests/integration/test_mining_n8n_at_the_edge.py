"""Extraction by the tenant's n8n workflow, through the edge of the running system: the
workflow (a local stand-in) receives a signed job and calls back signed pages, which the
gateway verifies and routes to mining; a malformed page changes nothing but says why; the
job ends with deduplicated leads, live progress, an export and the pages charged. And a
schedule run now never runs beside its busy last job."""

import asyncio
import csv
import io
import json
import time
from typing import Any

import httpx
import pytest

from bai_platform.webhooks import sign, verify_signature
from bai_testing.workflows import Workflow, workflow_server

from .conftest import Account
from .test_live_events import listening

pytestmark = pytest.mark.integration

SECRET = "n8n-mining-secret-0123456789"
PROGRESSED = "bai.mining.job.progressed.v1"


async def _use_workflow(edge: httpx.AsyncClient, account: Account, workflow: Workflow) -> None:
    response = await edge.put(
        "/v1/mining/workflow",
        json={"webhook_url": workflow.url, "secret": SECRET},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    assert SECRET not in response.text


async def _call_back(
    edge: httpx.AsyncClient, job: dict[str, Any], body: dict[str, Any], secret: str = SECRET
) -> httpx.Response:
    raw = json.dumps({"job_id": job["job_id"], **body}).encode()
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-BAI-Timestamp": str(stamp),
        "X-BAI-Signature": sign(secret, stamp, raw),
    }
    path = job["callback_url"].removeprefix(str(edge.base_url).rstrip("/"))
    return await edge.post(path, content=raw, headers=headers)


async def _job_until(
    edge: httpx.AsyncClient, account: Account, job_id: str, done: Any, within: float = 15.0
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            job: dict[str, Any] = (
                await edge.get(f"/v1/mining/jobs/{job_id}", headers=account.headers)
            ).json()
            if done(job):
                return job
            await asyncio.sleep(0.3)


async def _pages_balance(edge: httpx.AsyncClient, account: Account) -> int:
    async with asyncio.timeout(10):  # the new workspace's credits are granted on signup
        while True:
            balance = (await edge.get("/v1/billing/balance", headers=account.headers)).json()
            left: int = balance["balances"].get("extraction_pages", 0)
            if left:
                return left
            await asyncio.sleep(0.3)


ACME = {"organisation": "Acme Coffee", "website": "acme.example", "emails": ["info@acme.example"]}
BEANS = {"organisation": "Beans & Co", "phones": ["912 345 678"]}


async def test_a_workflow_mines_leads_page_by_page_and_a_bad_page_only_says_why(
    edge: httpx.AsyncClient, account: Account
) -> None:
    before = await _pages_balance(edge, account)
    async with workflow_server() as workflow, listening(edge, account) as live:
        await _use_workflow(edge, account, workflow)
        created = await edge.post(
            "/v1/mining/jobs",
            json={
                "source": {
                    "type": "n8n",
                    "params": {"query": "coffee shops", "city": "Madrid", "country": "ES"},
                },
                "limits": {"max_pages": 5},
            },
            headers=account.headers,
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        dispatched = await workflow.next_dispatch(within=15)
        verify_signature(  # raises when the signature does not match the raw body
            secret=SECRET,
            timestamp=dispatched.headers["x-bai-timestamp"],
            signature=dispatched.headers["x-bai-signature"],
            body=dispatched.body,
            now=time.time(),
        )
        job = dispatched.json()
        assert (job["job_id"], job["kind"], job["tenant_id"]) == (
            job_id,
            "extract",
            account.tenant_id,
        )
        assert job["params"] == {"query": "coffee shops", "city": "Madrid", "country": "ES"}
        assert job["limits"] == {"max_pages": 5, "max_items_per_page": 500}

        forged = await _call_back(edge, job, {"page": 1, "items": [ACME]}, "not-the-secret-0000")
        assert forged.status_code == 401
        first = await _call_back(edge, job, {"page": 1, "items": [ACME, BEANS], "final": False})
        assert first.status_code == 202, first.text
        await _job_until(edge, account, job_id, lambda j: j["progress"]["pages_fetched"] == 1)
        bad = {"page": 2, "items": [{"phones": ["+34 600 000 001"]}, {"emails": ["nope"]}]}
        assert (await _call_back(edge, job, bad)).status_code == 202
        rejected = await _job_until(edge, account, job_id, lambda j: bool(j["problems"]))
        fixed = {
            "page": 2,
            "items": [{"emails": ["INFO@acme.example"], "phones": ["+34 600 000 001"]}],
            "final": True,
        }
        assert (await _call_back(edge, job, fixed)).status_code == 202
        done = await _job_until(edge, account, job_id, lambda j: j["state"] != "running")
        progressed = await live.wait_for(
            lambda e: (
                e.get("event") == PROGRESSED
                and e["data"]["data"]["job_id"] == job_id
                and e["data"]["data"]["state"] == "succeeded"
            )
        )

    assert rejected["problems"] == ["page 2 rejected: items[1].emails[0]: not an email address"]
    assert rejected["progress"] == {"pages_fetched": 1, "items_found": 2, "errors": 0}
    assert done["state"] == "succeeded"
    assert done["progress"] == {"pages_fetched": 2, "items_found": 2, "errors": 0}
    assert progressed["data"]["data"]["items_found"] == 2
    leads = (await edge.get(f"/v1/mining/jobs/{job_id}/results", headers=account.headers)).json()
    acme, beans = leads["items"]
    assert (acme["organisation"], acme["domain"]) == ("Acme Coffee", "acme.example")
    assert (acme["emails"], acme["phones"]) == (["info@acme.example"], ["+34600000001"])
    assert acme["pages"] == ["n8n:page:1", "n8n:page:2"]
    assert (beans["organisation"], beans["phones"]) == ("Beans & Co", ["+34912345678"])
    exported = await edge.get(f"/v1/mining/jobs/{job_id}/results.csv", headers=account.headers)
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [row["organisation"] for row in rows] == ["Acme Coffee", "Beans & Co"]
    async with asyncio.timeout(10):  # 5 pages held, 2 charged, the rest given back
        while await _pages_balance(edge, account) != before - 2:
            await asyncio.sleep(0.3)


async def test_a_website_jobs_id_takes_no_callbacks(
    edge: httpx.AsyncClient, account: Account
) -> None:
    created = await edge.post(
        "/v1/mining/jobs",
        json={"source": {"type": "website", "urls": ["https://example.invalid/"]}},
        headers=account.headers,
    )
    job_id = created.json()["id"]
    job = {"job_id": job_id, "callback_url": f"/v1/webhooks/n8n/{job_id}"}

    response = await _call_back(edge, job, {"page": 1, "items": [ACME], "final": True})

    assert response.status_code == 404, response.text


async def test_a_schedule_run_now_never_runs_beside_its_busy_job(
    edge: httpx.AsyncClient, account: Account
) -> None:
    async with workflow_server() as workflow:
        await _use_workflow(edge, account, workflow)
        schedule = await edge.post(
            "/v1/mining/schedules",
            json={
                "name": "Madrid cafés, weekly",
                "cron": "0 9 * * 1",
                "timezone": "Europe/Madrid",
                "job": {"source": {"type": "n8n", "params": {"query": "cafés"}}},
            },
            headers=account.headers,
        )
        assert schedule.status_code == 201, schedule.text
        run = f"/v1/mining/schedules/{schedule.json()['id']}/run"

        first = await edge.post(run, headers=account.headers)
        assert first.status_code == 202, first.text
        busy = await edge.post(run, headers=account.headers)
        job = (await workflow.next_dispatch(within=15)).json()
        assert job["job_id"] == first.json()["id"]
        ended = await _call_back(edge, job, {"page": 1, "items": [ACME], "final": True})
        assert ended.status_code == 202, ended.text
        await _job_until(edge, account, job["job_id"], lambda j: j["state"] == "succeeded")
        second = await edge.post(run, headers=account.headers)

    assert (busy.status_code, busy.json()["code"]) == (409, "schedule_busy")
    assert busy.json()["job_id"] == first.json()["id"]
    assert second.status_code == 202, second.text
    assert second.json()["id"] != first.json()["id"]
    listed = (await edge.get("/v1/mining/schedules", headers=account.headers)).json()["items"]
    assert [(s["last_job_id"], s["skipped_runs"]) for s in listed] == [(second.json()["id"], 0)]
    cancelled = await edge.post(
        f"/v1/mining/jobs/{second.json()['id']}/cancel", headers=account.headers
    )
    assert cancelled.json()["state"] == "cancelled"
