"""POST /v1/mining/jobs and friends: queued jobs, refusals, results, exports."""

import csv
import io
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlmodel import col

from bai_platform.db import Database
from bai_testing.plugin import trusting_client
from mining.app import create_app
from mining.models import ExtractionJob, Lead
from mining.service.exports import FIXED
from mining.settings import MiningSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]
JOB = {
    "source": {"type": "website", "urls": ["https://example.org/"]},
    "limits": {"max_pages": 20, "max_depth": 2},
}


async def test_a_job_is_accepted_queued_with_its_progress_at_zero(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.post(
        "/v1/mining/jobs", json=JOB, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["id"].startswith("ext_")
    assert body["state"] == "queued"
    assert body["progress"] == {"pages_fetched": 0, "items_found": 0, "errors": 0}
    read = await client.get(f"/v1/mining/jobs/{body['id']}", headers=identity_for(tenant, "viewer"))
    assert read.json()["id"] == body["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"source": {"type": "website", "urls": []}},
        {"source": {"type": "website", "urls": ["ftp://example.org/"]}},
        {"source": {"type": "website", "urls": ["not a url"]}},
        {"source": {"type": "carrier-pigeon"}},
        {**JOB, "limits": {"max_pages": 0}},
        {**JOB, "limits": {"max_pages": 501}},
        {**JOB, "limits": {"max_depth": 6}},
        {**JOB, "tenant_id": "00000000-0000-0000-0000-000000000001"},
    ],
)
async def test_an_invalid_job_is_422_and_nothing_is_queued(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, body: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/mining/jobs", json=body, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 422


async def test_viewers_cannot_start_jobs_and_other_workspaces_cannot_see_them(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    refused = await client.post("/v1/mining/jobs", json=JOB, headers=identity_for(tenant, "viewer"))
    job = (
        await client.post("/v1/mining/jobs", json=JOB, headers=identity_for(tenant, "editor"))
    ).json()
    stranger = identity_for(UUID(int=tenant.int ^ 1), "owner")

    answers = [
        await client.get(f"/v1/mining/jobs/{job['id']}", headers=stranger),
        await client.get(f"/v1/mining/jobs/{job['id']}/results", headers=stranger),
        await client.get(f"/v1/mining/jobs/{job['id']}/results.csv", headers=stranger),
        await client.post(f"/v1/mining/jobs/{job['id']}/cancel", headers=stranger),
    ]

    assert refused.status_code == 403
    assert [a.status_code for a in answers] == [404, 404, 404, 404]


async def test_a_queued_job_is_cancelled_at_once_and_then_cannot_be_cancelled_again(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    job = (await client.post("/v1/mining/jobs", json=JOB, headers=headers)).json()

    cancelled = await client.post(f"/v1/mining/jobs/{job['id']}/cancel", headers=headers)
    again = await client.post(f"/v1/mining/jobs/{job['id']}/cancel", headers=headers)

    assert cancelled.json()["state"] == "cancelled"
    assert (again.status_code, again.json()["code"]) == (409, "job_ended")


async def test_results_page_and_export_as_csv_and_jsonl(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "viewer")
    job = (
        await client.post("/v1/mining/jobs", json=JOB, headers=identity_for(tenant, "editor"))
    ).json()
    async with mining_db.transaction() as session:
        for n in range(3):
            session.add(
                Lead(
                    tenant_id=tenant,
                    job_id=job["id"],
                    key=f"domain:{n}.example",
                    organisation='=HYPERLINK("http://evil")' if n == 0 else f"Org {n}",
                    domain=f"{n}.example",
                    emails=[f"info@{n}.example"],
                    phones=[],
                    socials=[],
                    addresses=[],
                    pages=[f"https://{n}.example/"],
                    data={"title": f"Page {n}"} if n else {"rating": "4.5"},
                )
            )

    first = await client.get(f"/v1/mining/jobs/{job['id']}/results?limit=2", headers=headers)
    rest = await client.get(
        f"/v1/mining/jobs/{job['id']}/results",
        params={"cursor": first.json()["next_cursor"]},
        headers=headers,
    )
    csv_text = (
        await client.get(f"/v1/mining/jobs/{job['id']}/results.csv", headers=headers)
    ).content
    jsonl = (await client.get(f"/v1/mining/jobs/{job['id']}/results.jsonl", headers=headers)).text

    assert len(first.json()["items"]) == 2
    assert [i["domain"] for i in rest.json()["items"]] == ["2.example"]
    assert rest.json()["next_cursor"] is None
    lines = csv_text.decode("utf-8-sig").splitlines()
    assert lines[0] == "organisation,domain,emails,phones,socials,addresses,pages,rating,title"
    assert lines[1].startswith("\"'=HYPERLINK(")
    assert len(jsonl.splitlines()) == 3


async def test_a_tampered_cursor_is_400(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    headers = identity_for(tenant, "editor")
    job = (await client.post("/v1/mining/jobs", json=JOB, headers=headers)).json()

    response = await client.get(f"/v1/mining/jobs/{job['id']}/results?cursor=!!!", headers=headers)

    assert response.status_code == 400


async def test_csv_header_cells_from_data_keys_are_neutralised_like_values(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "viewer")
    job = (
        await client.post("/v1/mining/jobs", json=JOB, headers=identity_for(tenant, "editor"))
    ).json()
    hostile_keys = ['=HYPERLINK("http://evil")', "+cmd", "-1", "@SUM(A1)", "\tx", "\rx", "'=x"]
    async with mining_db.transaction() as session:
        session.add(
            Lead(
                tenant_id=tenant,
                job_id=job["id"],
                key="domain:a.example",
                organisation="Org",
                domain="a.example",
                emails=[],
                phones=[],
                socials=[],
                addresses=[],
                pages=[],
                data={**dict.fromkeys(hostile_keys, "v"), "rating": "4.5"},
            )
        )

    body = (await client.get(f"/v1/mining/jobs/{job['id']}/results.csv", headers=headers)).content
    header = next(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))

    extra = header[len(FIXED) :]
    assert sorted(extra) == sorted(["'" + key for key in hostile_keys] + ["rating"])


async def test_a_workspace_with_too_many_queued_jobs_is_refused_and_nothing_is_queued(
    mining_settings: MiningSettings,
    signing_key: Ed25519PrivateKey,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
) -> None:
    capped = mining_settings.model_copy(update={"crawl_queued_per_workspace": 2})
    headers = identity_for(tenant, "editor")
    async with trusting_client(create_app(capped), signing_key) as client:
        accepted = [await client.post("/v1/mining/jobs", json=JOB, headers=headers) for _ in "ab"]
        refused = await client.post("/v1/mining/jobs", json=JOB, headers=headers)

    assert [r.status_code for r in accepted] == [202, 202]
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "too_many_queued_jobs"
    async with mining_db.transaction() as session:
        count = select(func.count()).where(col(ExtractionJob.tenant_id) == tenant)
        assert await session.scalar(count) == 2
