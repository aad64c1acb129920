"""Extraction through the edge: a job against a small site served locally finds exactly
the expected lead, reports progress live, exports CSV and JSON Lines, and spends the pages
it fetched."""

import asyncio
import csv
import io
import json

import httpx
import pytest

from bai_testing.sites import Site, website

from .conftest import Account
from .test_live_events import listening

pytestmark = pytest.mark.integration

HOME = """<html><head><title>Acme Coffee</title>
<script type="application/ld+json">{"@context": "https://schema.org",
 "@type": "CafeOrCoffeeShop", "name": "Acme Coffee", "telephone": "+34 912 345 678",
 "sameAs": ["https://www.instagram.com/acmecoffee/"],
 "address": {"@type": "PostalAddress", "streetAddress": "Calle Mayor 1",
             "postalCode": "28013", "addressLocality": "Madrid", "addressCountry": "ES"}}
</script></head><body>
<a href="/about">About</a> <a href="/private/prices">Prices</a> <a href="/staff">Staff</a>
</body></html>"""
ABOUT = (
    "<html><body><p>Write to info [at] acme [dot] example or =cmd@acme.example</p></body></html>"
)


async def test_a_site_is_mined_into_one_lead_with_live_progress_and_exports(
    edge: httpx.AsyncClient, account: Account
) -> None:
    fixture = Site(
        pages={"/": HOME, "/about": ABOUT, "/private/prices": HOME},
        redirects={"/staff": "http://10.0.0.1/admin"},
        robots="User-agent: *\nDisallow: /private/\n",
    )
    async with website(fixture) as site, listening(edge, account) as live:
        created = await edge.post(
            "/v1/mining/jobs",
            json={
                "source": {"type": "website", "urls": [f"{site.base}/"]},
                "limits": {"max_pages": 20, "max_depth": 2},
            },
            headers=account.headers,
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        async with asyncio.timeout(30):
            while True:
                job = (await edge.get(f"/v1/mining/jobs/{job_id}", headers=account.headers)).json()
                if job["state"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.5)
        progressed = await live.wait_for(
            lambda e: (
                e.get("event") == "bai.mining.job.progressed.v1"
                and e["data"]["data"]["job_id"] == job_id
                and e["data"]["data"]["state"] == job["state"]
            )
        )
    assert "/private/prices" not in fixture.requested
    assert job["state"] == "partial"  # the redirect to 10.0.0.1 was refused
    assert job["progress"] == {"pages_fetched": 2, "items_found": 1, "errors": 1}
    assert any("10.0.0.1" in p for p in job["problems"])
    assert progressed["data"]["data"]["pages_fetched"] == 2

    [lead] = (await edge.get(f"/v1/mining/jobs/{job_id}/results", headers=account.headers)).json()[
        "items"
    ]
    assert lead["organisation"] == "Acme Coffee"
    assert lead["phones"] == ["+34912345678"]
    assert set(lead["emails"]) == {"info@acme.example", "cmd@acme.example"}
    assert lead["socials"] == ["https://instagram.com/acmecoffee"]
    assert lead["addresses"] == ["Calle Mayor 1, 28013 Madrid, ES"]

    exported = await edge.get(f"/v1/mining/jobs/{job_id}/results.csv", headers=account.headers)
    [row] = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert row["organisation"] == "Acme Coffee"
    jsonl = await edge.get(f"/v1/mining/jobs/{job_id}/results.jsonl", headers=account.headers)
    assert json.loads(jsonl.text.splitlines()[0])["domain"] == "127.0.0.1"

    async with asyncio.timeout(10):  # 20 pages held, 2 charged, the rest given back
        while True:
            balance = (await edge.get("/v1/billing/balance", headers=account.headers)).json()
            if balance["balances"]["extraction_pages"] == 498:
                break
            await asyncio.sleep(0.3)
