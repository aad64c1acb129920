"""Schedules run a job again at cron times in their zone, never over a busy last run."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from bai_platform.db import Database
from mining.models import ExtractionJob, MiningSchedule
from mining.service.schedules import next_run, run_due

IdentityFor = Callable[[UUID, str], dict[str, str]]
pytestmark = pytest.mark.usefixtures("end_the_tests_jobs")
SCHEDULE = {
    "name": "Weekly leads",
    "cron": "0 9 * * 1",
    "timezone": "Europe/Madrid",
    "job": {"source": {"type": "website", "urls": ["https://example.org/"]}},
}


def test_cron_times_are_wall_times_of_the_zone_across_a_dst_change() -> None:
    # Mondays 09:00 in Madrid: 08:00Z in winter (CET), 07:00Z after 2027-03-28 (CEST).
    before = next_run("0 9 * * 1", "Europe/Madrid", datetime(2027, 3, 20, tzinfo=UTC))
    after = next_run("0 9 * * 1", "Europe/Madrid", datetime(2027, 3, 28, tzinfo=UTC))

    assert before == datetime(2027, 3, 22, 8, tzinfo=UTC)
    assert after == datetime(2027, 3, 29, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {**SCHEDULE, "cron": "every monday"},
        {**SCHEDULE, "cron": "0 9 * * 1 2027"},
        {**SCHEDULE, "timezone": "Mars/Olympus"},
        {**SCHEDULE, "job": {"source": {"type": "website", "urls": []}}},
    ],
)
async def test_a_bad_schedule_is_422(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, body: dict[str, object]
) -> None:
    response = await client.post(
        "/v1/mining/schedules", json=body, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 422


async def test_a_due_schedule_starts_a_job_and_never_one_beside_a_busy_run(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    created = await client.post(
        "/v1/mining/schedules", json=SCHEDULE, headers=identity_for(tenant, "editor")
    )
    assert created.status_code == 201, created.text
    schedule_id = UUID(created.json()["id"])
    assert datetime.fromisoformat(created.json()["next_run_at"]) > datetime.now(UTC)

    first = await _tick(mining_db, schedule_id)
    second = await _tick(mining_db, schedule_id)  # the first job is still queued
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(col(ExtractionJob.tenant_id) == tenant)
            .values(state="succeeded")
        )
    third = await _tick(mining_db, schedule_id)

    jobs = await _jobs(mining_db, tenant)
    assert len(jobs) == 2
    assert first.last_job_id == jobs[0].id
    assert second.last_job_id == jobs[0].id
    assert second.skipped_runs == 1
    assert third.last_job_id == jobs[1].id
    assert all(j.created_by == f"schedule:{schedule_id}" for j in jobs)


async def test_a_stopped_schedule_starts_nothing(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "editor")
    created = (await client.post("/v1/mining/schedules", json=SCHEDULE, headers=headers)).json()

    stopped = await client.delete(f"/v1/mining/schedules/{created['id']}", headers=headers)
    await _tick(mining_db, UUID(created["id"]))

    assert stopped.status_code == 204
    assert await _jobs(mining_db, tenant) == []


async def test_run_now_starts_the_job_unless_the_last_one_is_busy(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "editor")
    created = (await client.post("/v1/mining/schedules", json=SCHEDULE, headers=headers)).json()
    run = f"/v1/mining/schedules/{created['id']}/run"

    first = await client.post(run, headers=headers)
    busy = await client.post(run, headers=headers)
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(col(ExtractionJob.tenant_id) == tenant)
            .values(state="partial")
        )
    second = await client.post(run, headers=headers)

    assert first.status_code == 202, first.text
    assert (first.json()["state"], first.json()["source"]["urls"]) == (
        "queued",
        ["https://example.org/"],
    )
    assert (busy.status_code, busy.json()["code"]) == (409, "schedule_busy")
    assert busy.json()["job_id"] == first.json()["id"]
    assert first.json()["id"] in busy.json()["detail"]
    assert second.status_code == 202, second.text
    jobs = await _jobs(mining_db, tenant)
    assert [j.id for j in jobs] == [first.json()["id"], second.json()["id"]]
    assert all(j.created_by == f"schedule:{created['id']}" for j in jobs)
    async with mining_db.transaction() as session:
        schedule = await session.get_one(MiningSchedule, UUID(created["id"]))
    assert (schedule.last_job_id, schedule.skipped_runs) == (second.json()["id"], 0)


async def test_a_due_run_is_skipped_while_the_job_run_now_is_busy(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "editor")
    created = (await client.post("/v1/mining/schedules", json=SCHEDULE, headers=headers)).json()
    started = await client.post(f"/v1/mining/schedules/{created['id']}/run", headers=headers)

    ticked = await _tick(mining_db, UUID(created["id"]))

    assert (ticked.last_job_id, ticked.skipped_runs) == (started.json()["id"], 1)
    assert len(await _jobs(mining_db, tenant)) == 1


async def test_a_stopped_schedule_cannot_be_run_now(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "editor")
    created = (await client.post("/v1/mining/schedules", json=SCHEDULE, headers=headers)).json()
    await client.delete(f"/v1/mining/schedules/{created['id']}", headers=headers)

    response = await client.post(f"/v1/mining/schedules/{created['id']}/run", headers=headers)

    assert (response.status_code, response.json()["code"]) == (409, "schedule_stopped")
    assert await _jobs(mining_db, tenant) == []


async def test_viewers_and_other_workspaces_cannot_run_a_schedule(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, mining_db: Database
) -> None:
    headers = identity_for(tenant, "editor")
    created = (await client.post("/v1/mining/schedules", json=SCHEDULE, headers=headers)).json()
    run = f"/v1/mining/schedules/{created['id']}/run"

    viewer = await client.post(run, headers=identity_for(tenant, "viewer"))
    stranger = await client.post(run, headers=identity_for(UUID(int=tenant.int ^ 1), "owner"))

    assert (viewer.status_code, stranger.status_code) == (403, 404)
    assert await _jobs(mining_db, tenant) == []


async def _tick(db: Database, schedule_id: UUID) -> MiningSchedule:
    """Make the schedule due now and let the worker's pass run."""
    async with db.transaction() as session:
        await session.execute(
            update(MiningSchedule)
            .where(col(MiningSchedule.id) == schedule_id)
            .values(next_run_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    async with db.transaction() as session:
        await run_due(session)
    async with db.transaction() as session:
        return await session.get_one(MiningSchedule, schedule_id)


async def _jobs(db: Database, tenant: UUID) -> list[ExtractionJob]:
    async with db.transaction() as session:
        query = select(ExtractionJob).where(col(ExtractionJob.tenant_id) == tenant)
        return list((await session.scalars(query.order_by(col(ExtractionJob.created_at)))).all())
