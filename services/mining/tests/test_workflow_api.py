"""The workspace's mining workflow: owners and admins set it; the secret is stored
encrypted and never shown, nor are credentials in the URL; internal addresses are refused
unless the deployment allows them; n8n jobs need it.

Workflows are saved through an app that allows private destinations, so no name needs to
resolve; the refusal of internal addresses has its own test on the strict app."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlmodel import col

from bai_platform.db import Database
from mining.models import ExtractionJob, MiningSchedule, MiningWorkflow

IdentityFor = Callable[[UUID, str], dict[str, str]]
pytestmark = pytest.mark.usefixtures("end_the_tests_jobs")

URL = "/v1/mining/workflow"
SECRET = "n8n-mining-secret-0123456789"
WEBHOOK = "https://n8n.example.com/webhook/bai-mine"
WORKFLOW = {"webhook_url": WEBHOOK, "secret": SECRET, "deadline_seconds": 900}
N8N_JOB = {
    "source": {"type": "n8n", "params": {"query": "coffee shops", "city": "Madrid"}},
    "limits": {"max_pages": 5},
}


async def stored(db: Database, tenant: UUID) -> MiningWorkflow | None:
    async with db.transaction() as session:
        return await session.get(MiningWorkflow, tenant)


async def jobs_of(db: Database, tenant: UUID) -> list[ExtractionJob]:
    async with db.transaction() as session:
        query = select(ExtractionJob).where(col(ExtractionJob.tenant_id) == tenant)
        return list((await session.scalars(query)).all())


# ---- setting, reading, deleting ------------------------------------------------------------
@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_owners_and_admins_set_the_workflow_and_its_secret_is_stored_encrypted(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    workflow_box: Fernet,
    role: str,
) -> None:
    response = await private_client.put(URL, json=WORKFLOW, headers=identity_for(tenant, role))

    assert response.status_code == 200, response.text
    assert set(response.json()) == {
        "webhook_url",
        "accept_secret_header",
        "deadline_seconds",
        "updated_at",
    }
    assert (response.json()["webhook_url"], response.json()["deadline_seconds"]) == (WEBHOOK, 900)
    assert SECRET not in response.text
    row = await stored(mining_db, tenant)
    assert row is not None
    assert SECRET.encode() not in row.secret
    assert workflow_box.decrypt(row.secret).decode() == SECRET


async def test_reading_the_workflow_never_shows_the_secret_nor_credentials_in_the_url(
    private_client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    body = {**WORKFLOW, "webhook_url": "https://bai:hunter22@n8n.example.com/webhook/bai-mine"}
    saved = await private_client.put(URL, json=body, headers=identity_for(tenant, "owner"))

    read = await private_client.get(URL, headers=identity_for(tenant, "viewer"))

    assert read.status_code == 200, read.text
    for answer in (saved, read):
        assert answer.json()["webhook_url"] == "https://***@n8n.example.com/webhook/bai-mine"
        assert "hunter22" not in answer.text
        assert SECRET not in answer.text
    assert (read.json()["deadline_seconds"], read.json()["accept_secret_header"]) == (900, False)


async def test_saving_again_replaces_the_workflow(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    workflow_box: Fernet,
) -> None:
    headers = identity_for(tenant, "owner")
    await private_client.put(URL, json=WORKFLOW, headers=headers)
    other = "another-secret-of-enough-length"

    response = await private_client.put(
        URL,
        json={"webhook_url": WEBHOOK + "-2", "secret": other, "accept_secret_header": True},
        headers=headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["deadline_seconds"] == 3600  # the default
    assert response.json()["accept_secret_header"] is True
    row = await stored(mining_db, tenant)
    assert row is not None
    assert (row.webhook_url, workflow_box.decrypt(row.secret).decode()) == (WEBHOOK + "-2", other)


async def test_no_workflow_is_a_404_problem_and_deleting_one_forgets_it(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
) -> None:
    headers = identity_for(tenant, "owner")
    missing = await private_client.get(URL, headers=headers)
    await private_client.put(URL, json=WORKFLOW, headers=headers)

    deleted = await private_client.delete(URL, headers=headers)
    after = await private_client.get(URL, headers=headers)

    assert (missing.status_code, missing.json()["code"]) == (404, "no_mining_workflow")
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "PUT /v1/mining/workflow" in missing.json()["detail"]
    assert deleted.status_code == 204
    assert after.status_code == 404
    assert await stored(mining_db, tenant) is None


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_editors_and_viewers_may_not_set_or_delete_the_workflow(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    role: str,
) -> None:
    await private_client.put(URL, json=WORKFLOW, headers=identity_for(tenant, "owner"))

    put = await private_client.put(
        URL, json={**WORKFLOW, "deadline_seconds": 60}, headers=identity_for(tenant, role)
    )
    delete = await private_client.delete(URL, headers=identity_for(tenant, role))

    assert (put.status_code, delete.status_code) == (403, 403)
    row = await stored(mining_db, tenant)
    assert row is not None
    assert row.deadline_seconds == 900


async def test_another_workspace_has_no_workflow(
    private_client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    await private_client.put(URL, json=WORKFLOW, headers=identity_for(tenant, "owner"))

    response = await private_client.get(
        URL, headers=identity_for(UUID(int=tenant.int ^ 1), "owner")
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {**WORKFLOW, "secret": "s" * 15},
        {**WORKFLOW, "secret": "s" * 501},
        {**WORKFLOW, "secret": "nul-in-the-secret\x00-0123"},
        {**WORKFLOW, "deadline_seconds": 59},
        {**WORKFLOW, "deadline_seconds": 86_401},
        {**WORKFLOW, "webhook_url": "ftp://n8n.example.com/webhook"},
        {**WORKFLOW, "webhook_url": "not a url"},
        {"webhook_url": WEBHOOK},
        {**WORKFLOW, "engine": "n8n"},
    ],
    ids=[
        "short-secret",
        "long-secret",
        "nul-secret",
        "short-deadline",
        "long-deadline",
        "not-http",
        "not-a-url",
        "no-secret",
        "unknown-field",
    ],
)
async def test_an_invalid_workflow_is_422_and_nothing_is_stored(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    body: dict[str, Any],
) -> None:
    response = await private_client.put(URL, json=body, headers=identity_for(tenant, "owner"))

    assert response.status_code == 422, response.text
    assert await stored(mining_db, tenant) is None


async def test_a_workflow_on_an_internal_address_is_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    body = {**WORKFLOW, "webhook_url": "http://127.0.0.1:5678/webhook/bai-mine"}

    response = await client.put(URL, json=body, headers=identity_for(tenant, "owner"))

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "webhook_url"]
    assert "private, loopback or otherwise internal" in response.json()["detail"]
    assert await stored(mining_db, tenant) is None


# ---- n8n jobs need it ----------------------------------------------------------------------
async def test_an_n8n_job_without_a_workflow_is_refused_saying_what_to_do_and_nothing_is_made(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    response = await client.post(
        "/v1/mining/jobs", json=N8N_JOB, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "no_mining_workflow"
    assert "PUT /v1/mining/workflow" in response.json()["detail"]
    assert await jobs_of(mining_db, tenant) == []


async def test_an_n8n_job_is_queued_with_its_params_once_the_workflow_is_set(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
) -> None:
    await private_client.put(URL, json=WORKFLOW, headers=identity_for(tenant, "owner"))

    response = await private_client.post(
        "/v1/mining/jobs", json=N8N_JOB, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued"
    assert response.json()["source"] == N8N_JOB["source"]
    [job] = await jobs_of(mining_db, tenant)
    assert (job.source_type, job.limits["max_pages"], job.dispatch) == ("n8n", 5, None)


@pytest.mark.parametrize(
    "source",
    [
        {"type": "n8n", "params": "coffee shops"},
        {"type": "n8n", "params": {"query": "x" * (16 * 1024)}},
        {"type": "n8n", "params": {"query": "nul\x00"}},
        {"type": "n8n", "params": {}, "urls": ["https://example.org/"]},
        {"type": "n8n-ish", "params": {}},
    ],
    ids=["params-not-an-object", "params-too-big", "nul-in-params", "website-field", "bad-type"],
)
async def test_an_invalid_n8n_source_is_422(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    source: dict[str, Any],
) -> None:
    await private_client.put(URL, json=WORKFLOW, headers=identity_for(tenant, "owner"))

    response = await private_client.post(
        "/v1/mining/jobs", json={"source": source}, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 422, response.text
    assert await jobs_of(mining_db, tenant) == []


async def test_an_n8n_schedule_without_a_workflow_is_refused(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    body = {"name": "Weekly cafés", "cron": "0 9 * * 1", "job": N8N_JOB}

    response = await client.post(
        "/v1/mining/schedules", json=body, headers=identity_for(tenant, "editor")
    )

    assert (response.status_code, response.json()["code"]) == (409, "no_mining_workflow")
    async with mining_db.transaction() as session:
        query = select(MiningSchedule).where(col(MiningSchedule.tenant_id) == tenant)
        assert (await session.scalars(query)).all() == []
